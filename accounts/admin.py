"""Django admin for accounts: the same actions and the same last-administrator protection as
the users page (every write goes through accounts.services)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from accounts import services
from accounts.models import GroupLimits, User, UserLimits, UserStatus


class UserAdminChangeForm(UserChangeForm):  # type: ignore[type-arg]
    class Meta:
        model = User
        fields = "__all__"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        user = self.instance
        keeps_admin = cleaned.get("status") == UserStatus.APPROVED and cleaned.get("is_staff")
        if user.pk is not None and not keeps_admin:
            try:
                services.user_guard_last_admin(losing=[user])
            except services.LastAdminError as error:
                raise forms.ValidationError(str(error)) from None
        return cleaned


class UserAdminCreationForm(AdminUserCreationForm):  # type: ignore[type-arg]
    class Meta:
        model = User
        fields = ("email",)


@admin.register(UserLimits)
class UserLimitsAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """A person's own limits (also on the Users page): each one set wins over their groups'."""

    list_display = ("user", "requests_per_minute", "tokens_per_minute", "tokens_per_day", "tokens_per_month")
    search_fields = ("user__email",)
    autocomplete_fields = ("user",)


class GroupLimitsInline(admin.StackedInline):  # type: ignore[type-arg]
    model = GroupLimits
    can_delete = False
    verbose_name_plural = "limits (a person in several groups gets each one's most generous value)"


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(BaseGroupAdmin):
    inlines = (GroupLimitsInline,)


@admin.register(User)
class UserAdmin(BaseUserAdmin):  # type: ignore[type-arg]
    form = UserAdminChangeForm
    add_form = UserAdminCreationForm
    list_display = ("email", "status", "is_staff", "date_joined", "approved_at", "last_login")
    list_filter = ("status", "is_staff")
    search_fields = ("email",)
    ordering = ("email",)
    readonly_fields = ("approved_at", "approved_by", "last_login", "date_joined")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        # No is_superuser: it follows is_staff (services.user_save), as on the users page.
        ("Access", {"fields": ("status", "is_staff", "groups", "user_permissions")}),
        ("History", {"fields": ("date_joined", "approved_at", "approved_by", "last_login")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "usable_password", "password1", "password2")}),)
    actions = ("approve_selected", "disable_selected", "delete_selected_users")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # replaced by delete_selected_users (guarded)
        return actions

    @admin.action(description="Approve (or re-enable) the selected accounts", permissions=["change"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        waiting = list(queryset.exclude(status=UserStatus.APPROVED))
        for user in waiting:
            services.user_approve(user=user, by=request.user)  # type: ignore[arg-type]
        self.message_user(request, f"{len(waiting)} account(s) approved.", messages.SUCCESS)

    @admin.action(description="Disable the selected accounts", permissions=["change"])
    def disable_selected(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        done = 0
        for user in queryset:
            try:
                services.user_disable(user=user, by=request.user)  # type: ignore[arg-type]
            except services.AccountsError as error:
                self.message_user(request, f"{user.email}: {error}", messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(request, f"{done} account(s) disabled.", messages.SUCCESS)

    @admin.action(description="Delete the selected accounts", permissions=["delete"])
    def delete_selected_users(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse | None:
        try:
            services.user_guard_last_admin(losing=queryset)
        except services.AccountsError as error:
            self.message_user(request, str(error), messages.ERROR)
            return None
        return delete_selected(self, request, queryset)  # Django's confirmation page, then delete_queryset

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        services.user_save(user=obj, by=request.user)  # type: ignore[arg-type]

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except services.LastAdminError as error:
            # Another administrator changed things between the form's check and the save (which
            # checks again under the lock): nothing was saved; say so instead of a server error.
            self.message_user(request, str(error), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        services.user_delete(user=obj, by=request.user)  # type: ignore[arg-type]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        services.users_delete(users=queryset, by=request.user)  # type: ignore[arg-type]

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        user = self.get_object(request, object_id)
        if user is not None:
            try:
                services.user_guard_last_admin(losing=[user])
            except services.AccountsError as error:
                self.message_user(request, str(error), messages.ERROR)
                return HttpResponseRedirect(reverse("admin:accounts_user_change", args=[user.pk]))
        return super().delete_view(request, object_id, extra_context)

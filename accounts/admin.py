from django.contrib import admin

from accounts.models import User


@admin.register(User)
class UserAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("email", "status", "is_staff", "date_joined")
    list_filter = ("status", "is_staff")

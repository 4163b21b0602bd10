from __future__ import annotations

import unicodedata
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, Group, PermissionsMixin
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


def canonical_email(email: str) -> str:
    """One spelling per address, so lookalikes meet the uniqueness check: NFKC (fullwidth and
    compatibility characters become plain ones) and the domain IDNA-encoded (lowercase, xn--).
    The local part keeps its case; uniqueness ignores case anyway. ValueError when the domain
    cannot be encoded."""
    text = unicodedata.normalize("NFKC", email.strip())
    local, _, domain = text.rpartition("@")
    if not local or not domain:
        return text
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise ValueError(str(exc)) from None
    return f"{local}@{ascii_domain}"


# The permissions an administrator may grant to a member (DESIGN.md's contract), as people read them.
GRANTABLE_RIGHTS = {
    "servers.operate_any_server": "operate every server",
    "profiles.manage_any_profile": "manage every profile",
    "library.delete_any_model": "delete any model",
    "profiles.use_unsafe_options": "use unsafe server options",
    "gateway.read_metrics": "read the Prometheus metrics",
}


class UserStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    DISABLED = "disabled", "Disabled"


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email__iexact=username)

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        user = self.model(email=self.normalize_email(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("status", UserStatus.APPROVED)
        extra.setdefault("approved_at", timezone.now())
        return self.create_user(email, password, is_staff=True, is_superuser=True, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person who signs in with their email; only `approved` accounts get anything."""

    email = models.EmailField("email address", unique=True)
    status = models.CharField(max_length=16, choices=UserStatus.choices, default=UserStatus.PENDING)
    is_staff = models.BooleanField("administrator", default=False)
    date_joined = models.DateTimeField(default=timezone.now)
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    objects: ClassVar[UserManager] = UserManager()  # type: ignore[assignment]

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ["email"]
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self) -> str:
        return self.email

    @property
    def is_active(self) -> bool:  # type: ignore[override]
        """Django's notion of an active account: only approved ones (admin, permissions)."""
        return self.status == UserStatus.APPROVED

    @property
    def granted_rights(self) -> list[str]:
        """The extra rights a member holds, directly or through a group (administrators hold all)."""
        if self.is_staff:
            return []
        held = self.get_all_permissions()
        return [label for codename, label in GRANTABLE_RIGHTS.items() if codename in held]

    @property
    def direct_rights(self) -> set[str]:
        """The grantable permissions given to the account itself (not through a group)."""
        return {
            f"{permission.content_type.app_label}.{permission.codename}" for permission in self.user_permissions.all()
        } & GRANTABLE_RIGHTS.keys()

    @property
    def has_non_ascii_email(self) -> bool:
        """Worth a second look before approval: such an address can imitate another one."""
        return not self.email.isascii()

    @property
    def is_admin(self) -> bool:
        return self.is_staff

    @property
    def is_approved(self) -> bool:
        return self.status == UserStatus.APPROVED


# The largest value a limit holds: every database's plain integer.
LIMIT_MAX = 2**31 - 1


def _limit(label: str, help_text: str) -> models.PositiveIntegerField:  # type: ignore[type-arg]
    return models.PositiveIntegerField(
        label,
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(LIMIT_MAX)],
        help_text=help_text,
    )


class Limits(models.Model):
    """The five limits of the gateway (`/v1/`); blank: none set here (accounts/limits.py says how a
    person's, their groups' and a key's combine). Tokens are prompt + completion, as the model
    server's `usage` counts them; minutes, days and months are calendar ones in TIME_ZONE."""

    requests_per_minute = _limit("requests per minute", "Blank: no limit.")
    tokens_per_minute = _limit("tokens per minute", "Prompt and answer. Blank: no limit.")
    tokens_per_day = _limit("tokens per day", "A budget, renewed at midnight. Blank: none.")
    tokens_per_month = _limit("tokens per month", "A budget, renewed on the 1st. Blank: none.")
    max_concurrent = _limit("concurrent requests", "Requests at once. Blank: no limit.")

    class Meta:
        abstract = True


class UserLimits(Limits):
    """A person's own limits, set by an administrator: each one set wins over their groups'."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="limits")

    class Meta:
        verbose_name = verbose_name_plural = "person's limits"

    def __str__(self) -> str:
        return f"limits of {self.user}"


class GroupLimits(Limits):
    """A group's limits: a person in several groups gets each limit's most generous value."""

    group = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="limits")

    class Meta:
        verbose_name = verbose_name_plural = "group's limits"

    def __str__(self) -> str:
        return f"limits of {self.group}"

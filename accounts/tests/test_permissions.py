"""may_act: the owner, a holder of the permission or an administrator, and only while approved."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.models import Group, Permission

from accounts.models import User, UserStatus
from accounts.permissions import may_act

PERM = "servers.operate_any_server"


def test_owner_permission_holder_and_administrator_may_act_others_may_not(make_user: Callable[..., User]) -> None:
    owner, other, admin = make_user(), make_user(), make_user(admin=True)
    holder, group_member = make_user(), make_user()
    permission = Permission.objects.get(content_type__app_label="servers", codename="operate_any_server")
    holder.user_permissions.add(permission)
    group = Group.objects.create(name="operators")
    group.permissions.add(permission)
    group_member.groups.add(group)
    for user in (owner, holder, group_member, admin):
        assert may_act(user, perm=PERM, owner_id=owner.pk), user.email
    assert not may_act(other, perm=PERM, owner_id=owner.pk)
    assert not may_act(other, perm=PERM, owner_id=None)
    assert not may_act(owner, perm="profiles.manage_any_profile", owner_id=other.pk)


def test_an_account_that_is_not_approved_may_not_act_even_on_its_own(make_user: Callable[..., User]) -> None:
    for status in (UserStatus.PENDING, UserStatus.DISABLED):
        user = make_user(status=status, admin=True)
        assert not may_act(user, perm=PERM, owner_id=user.pk), status

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def owner_from_creator(apps, schema_editor):
    """Existing profiles belong to whoever created them (those with no creator stay the administrators')."""
    ServerProfile = apps.get_model("profiles", "ServerProfile")
    ServerProfile.objects.filter(owner__isnull=True).update(owner=models.F("created_by"))


class Migration(migrations.Migration):

    dependencies = [
        ('profiles', '0003_aliases'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='serverprofile',
            options={'ordering': ['name'], 'permissions': [('manage_any_profile', 'Can edit and delete every profile'), ('use_unsafe_options', 'Can use unsafe server options (remote code, network host, any path)')]},
        ),
        migrations.AddField(
            model_name='serverprofile',
            name='owner',
            field=models.ForeignKey(blank=True, help_text='May edit, delete, stop and restart it; an administrator can hand it to someone else.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='owned_profiles', to=settings.AUTH_USER_MODEL),
        ),
        migrations.RunPython(owner_from_creator, migrations.RunPython.noop),
    ]

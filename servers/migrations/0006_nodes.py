import django.db.models.deletion
from django.db import migrations, models

import nodes.selectors
from nodes.migrating import move_onto_local_node


class Migration(migrations.Migration):
    """The single supervisor heartbeat becomes each node's row (nodes.Node); memory samples belong
    to the node that took them, those taken before nodes to the machine running the migration."""

    dependencies = [
        ("nodes", "0001_initial"),
        ("servers", "0005_on_demand"),
    ]

    operations = [
        migrations.DeleteModel(name="SupervisorHeartbeat"),
        migrations.AddField(
            model_name="systemsample",
            name="node",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.CASCADE, related_name="samples", to="nodes.node"
            ),
        ),
        migrations.RunPython(move_onto_local_node("servers", "SystemSample"), migrations.RunPython.noop),
        migrations.AlterField(
            model_name="systemsample",
            name="node",
            field=models.ForeignKey(
                default=nodes.selectors.this_node_id,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="samples",
                to="nodes.node",
            ),
        ),
    ]

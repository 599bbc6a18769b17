# webhook_id unique through a constraint, without the LIKE-pattern (varchar_pattern_ops) index
# that unique=True builds on PostgreSQL: no query uses it, and every event wrote into it.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('events', '0001_initial'),
    ]

    operations = [
        migrations.AlterField(
            model_name='event',
            name='webhook_id',
            field=models.CharField(max_length=40, verbose_name='webhook id'),
        ),
        migrations.AddConstraint(
            model_name='event',
            constraint=models.UniqueConstraint(fields=('webhook_id',), name='event_unique_webhook_id'),
        ),
    ]

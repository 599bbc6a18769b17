# username and external_id unique through constraints, without the LIKE-pattern
# (varchar_pattern_ops) indexes that unique=True builds on PostgreSQL: no query uses them, and
# the tick's next_call_at update, not a HOT update, wrote into both for every claimed user.

import django.contrib.auth.validators
import users.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('users', '0012_user_calendar'),
    ]

    operations = [
        migrations.AlterField(
            model_name='user',
            name='external_id',
            field=models.CharField(blank=True, help_text="The product's own id for this user (the users API's key): letters, digits and . _ : -", max_length=128, null=True, validators=[users.validators.validate_external_id]),
        ),
        migrations.AlterField(
            model_name='user',
            name='username',
            field=models.CharField(error_messages={'unique': 'A user with that username already exists.'}, help_text='Required. 150 characters or fewer. Letters, digits and @/./+/-/_ only.', max_length=150, validators=[django.contrib.auth.validators.UnicodeUsernameValidator()], verbose_name='username'),
        ),
        migrations.AddConstraint(
            model_name='user',
            constraint=models.UniqueConstraint(fields=('username',), name='user_unique_username'),
        ),
        migrations.AddConstraint(
            model_name='user',
            constraint=models.UniqueConstraint(fields=('external_id',), name='user_unique_external_id'),
        ),
    ]

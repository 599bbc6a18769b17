"""The default message templates, one per channel, which operators then edit in the admin.

The texts are copied here rather than imported: a migration must keep working as the code
it was written with moves on."""

from django.db import migrations

DEFAULTS = [
    (
        "sms",
        "",
        "Hi {{ first_name }}, we tried to call you on {{ local_date|date:\"l j F\" }} and could not "
        "reach you. We will call again at your usual time. Reply STOP to stop these texts, "
        "or STOP CALLS to stop the calls too.",
    ),
    (
        "email",
        "We missed you on {{ local_date|date:\"l j F\" }}",
        "Hi {{ first_name }},\n\n"
        "We tried to call you on {{ local_date|date:\"l j F\" }} and could not reach you. "
        "We will call again at your usual time.\n\n"
        "If you would rather not get these e-mails, tell us and we will stop them.\n",
    ),
]


def create_defaults(apps, schema_editor):
    MessageTemplate = apps.get_model("notifications", "MessageTemplate")
    for channel, subject, body in DEFAULTS:
        MessageTemplate.objects.get_or_create(
            kind="day_missed", channel=channel, defaults={"subject": subject, "body": body}
        )


class Migration(migrations.Migration):
    dependencies = [("notifications", "0001_initial")]

    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]

"""The admin action "Forget this person": a confirmation page first, then users.erasure."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from web.display import admin_time

from .erasure import forget_person
from .models import Erasure


def forget_people_action(
    model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> TemplateResponse | None:
    """Django's delete_selected pattern: the first POST shows who would be forgotten and
    what that erases; the confirmation (``post`` in the form) forgets them."""
    people = list(queryset.order_by("pk"))
    if request.POST.get("post") == "yes":
        actor = f"admin ({request.user.get_username()})"
        for user in people:
            forget_person(user_id=user.pk, actor=actor)
        count = len(people)
        model_admin.message_user(
            request,
            f"Forgotten: {count} {'person' if count == 1 else 'people'}. Their calls stay, without "
            "anything that identifies them; the erasure is recorded.",
            messages.SUCCESS,
        )
        return None
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Forget these people?" if len(people) != 1 else "Forget this person?",
        "people": people,
        "queryset": queryset,
        "opts": model_admin.model._meta,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "action_name": "forget_people",
    }
    return TemplateResponse(request, "admin/users/user/forget_confirmation.html", context)


@admin.register(Erasure)
class ErasureAdmin(admin.ModelAdmin):
    """The record of erasures: read only (it is the proof that a request was honoured)."""

    list_display = ("erased", "user_id", "external_id", "actor", "suppressed")
    search_fields = ("external_id",)
    readonly_fields = ("user_id", "external_id", "erased_at", "actor", "counts", "suppressed")

    @admin.display(description="erased", ordering="erased_at")
    def erased(self, obj: Erasure) -> str:
        return admin_time(obj.erased_at)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

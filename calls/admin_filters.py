"""List filters the calls' admin pages share."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin


class ProviderFilter(admin.SimpleListFilter):
    # The configured providers rather than SELECT DISTINCT over every call ever placed.
    title = "provider"
    parameter_name = "provider"
    # The call's provider, as the filtered model reaches it.
    provider_field = "provider"

    def lookups(self, request, model_admin):
        return [(name, name) for name in settings.CALL_PROVIDERS]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(**{self.provider_field: self.value()})
        return queryset

"""Project-wide pages that belong to no app: the HTTP API's description."""

from __future__ import annotations

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

# The one description of the API (docs/api.md): the file the docs site links and the tests
# check the views against, served as it is.
OPENAPI_DOCUMENT = settings.BASE_DIR / "docs" / "openapi.yaml"


@require_safe
@staff_member_required
def api_schema(request: HttpRequest) -> HttpResponse:
    """The OpenAPI document, as YAML, for staff (anyone else goes to the admin's login, as
    for the dashboard)."""
    return HttpResponse(OPENAPI_DOCUMENT.read_bytes(), content_type="application/yaml; charset=utf-8")

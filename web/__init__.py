"""What every app's edges share: the JSON API's decorators and helpers (http.py) and how
pages show times and call statuses (display.py)."""

# relevel: one image for web (gunicorn), worker and scheduler; docker-compose.yml runs all three.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so that a code change does not reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .

# collectstatic loads the settings, which refuse to start without a real SECRET_KEY when
# DEBUG is off: this throwaway key and provider exist for this build step only and are not
# in the image's environment at run time, where .env must supply the real values.
RUN SECRET_KEY=build-only-collectstatic-key-never-used-at-run-time \
    CALL_PROVIDER=simulator \
    python manage.py collectstatic --noinput

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin relevel
USER relevel

EXPOSE 8000
# The access log's format (no query strings: they may hold phone numbers) is in the config.
CMD ["gunicorn", "relevel.wsgi", "-c", "deploy/gunicorn.conf.py", "--bind", "0.0.0.0:8000"]

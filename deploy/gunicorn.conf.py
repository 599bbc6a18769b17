"""gunicorn settings of relevel's web process: `gunicorn relevel.wsgi -c deploy/gunicorn.conf.py`
(docker-compose.yml, the Dockerfile). Bind address and worker count stay on the command line.
"""

# The access log, on stdout. Each line names the path (%(U)s), never the query string or
# the Referer: an admin search (/admin/users/user/?q=%2B919876543210) and the page opened
# from its results would otherwise write whole phone numbers to it. Behind nginx, %(h)s
# is nginx; the client is the last address of X-Forwarded-For.
accesslog = "-"
access_log_format = '%(h)s %({x-forwarded-for}i)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'
# Masks any number still left in an access or error line (a number in a path).
logger_class = "relevel.gunicorn_logging.PhoneRedactingLogger"

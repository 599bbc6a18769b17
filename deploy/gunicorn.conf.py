"""gunicorn settings of relevel's web process: `gunicorn relevel.wsgi -c deploy/gunicorn.conf.py`
(docker-compose.yml, the Dockerfile). The bind address stays on the command line.
"""

import os

# Sync workers, (2 x cores) + 1 of them: gunicorn's own starting point
# (https://docs.gunicorn.org/en/stable/design.html#how-many-workers). A sync worker leaves
# its core idle while PostgreSQL or Redis answers; with 3 workers on 2 cores a tenth of the
# box idled under webhook load, with 5 none did (BENCHMARKS.md, issue 21). Capped at 9: each
# worker is a process (about 60 MB) holding a PostgreSQL connection, and a big host is
# usually shared. WEB_CONCURRENCY, or --workers on the command line, sets it instead.


CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"


def _cores() -> int:
    """The cores this process may use: those it may run on, fewer if its container's CPU
    quota (cgroup v2's cpu.max, what `docker --cpus` and Kubernetes' limits set) is lower."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        with open(CGROUP_CPU_MAX) as limits:
            quota, period = limits.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit to read
    return cores


workers = int(os.environ.get("WEB_CONCURRENCY") or min(2 * _cores() + 1, 9))

# The access log, on stdout. Each line names the path (%(U)s), never the query string or
# the Referer: an admin search (/admin/users/user/?q=%2B919876543210) and the page opened
# from its results would otherwise write whole phone numbers to it. Behind nginx, %(h)s
# is nginx; the client is the last address of X-Forwarded-For.
accesslog = "-"
access_log_format = '%(h)s %({x-forwarded-for}i)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'
# Masks any number still left in an access or error line (a number in a path).
logger_class = "relevel.gunicorn_logging.PhoneRedactingLogger"

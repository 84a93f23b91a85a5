"""Small shared helpers for test modules."""
import time


def wait_until(pred, timeout=5.0, interval=0.05, msg="condition"):
    """Poll pred() until it returns a truthy value; return it, or fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s (last value %r)" % (msg, v))
        time.sleep(interval)


def now_ms():
    return int(time.time() * 1000)


def assert_recent(ms, slack=10000):
    """ctime/mtime (ms since epoch) within `slack` ms of local time."""
    assert abs(ms - now_ms()) < slack, (ms, now_ms())


def tolerate_background_writes(fn):
    """For tests that assert exact zxid gaps: a write by something else (a session of an
    earlier test expiring, the container manager) between two measured requests would
    break the gap. Re-run the test body up to 3 times, each time in a fresh sub-node of
    `base`; a real bug fails all attempts. The test must take `raw` and `base` fixtures."""
    import functools

    @functools.wraps(fn)
    def wrapper(**kw):
        last = None
        for attempt in range(3):
            sub = kw["base"] + "/try%d" % attempt
            kw["raw"].create(sub)
            try:
                return fn(**dict(kw, base=sub))
            except AssertionError as e:
                last = e
        raise last

    return wrapper

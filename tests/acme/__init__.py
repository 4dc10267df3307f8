"""Acme: a third vendor that exists only in the tests, to show that a vendor is one package
(plus its registration) and that no shared code needs an edit for it.

Its lock (``sim_lock.AcmeLock``) speaks a one-line protocol: the companion writes ``OPEN`` and
the lock notifies ``OPENED <n>``, its n-th opening, which the plugin keeps as a log record.
"""

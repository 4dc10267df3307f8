"""The Nuki Web API (``https://api.nuki.io``): keys, keypad PINs, logs, lock actions.

:mod:`.client` speaks the API one request at a time; :mod:`.ops` is what the CLI calls (check,
send the full set, confirm by reading back); :mod:`.rules` and :mod:`.window` are the API's
rules and its time fields; :mod:`.settings` the ``web_url`` / ``api_token`` settings.
"""

"""The ASSA ABLOY Keyless Administration API v2 client, and the operating-device stand-in client.

Authentication (vendor doc): ``POST /login`` with the administrator's ``userId`` + ``accessKey``
and the ``X-Api-Key`` header gives a token valid one hour; every other call carries
``X-Api-Key``, ``Authorization: Bearer <token>`` and the versioned vendor media type in
``Accept``. :class:`KeylessAuth` does this for every request of the client, logs in again a
margin before the hour is up, and once more when the platform answers 401 anyway.

Errors are RFC 7807 problem+json: 403 is the API key, 401 the credentials, 404 an unknown
resource, 400/409/422 a refused request (the vendor's ``detail`` is quoted), 429 rate limiting
(waited out, bounded, honouring ``Retry-After``), 5xx trouble on the platform's side.

The document names two paths outright (``/login``, ``/locking-device``); the others follow the
same singular-noun pattern and the query-parameter names it gives (``user-id``,
``gateway-device-id`` ...); revoking an invitation is ``DELETE``, cancelling a remote command
``POST .../cancel`` (the simulated platform reads the document the same way). They are all in
:data:`PATHS`, in one place, for that reason.

:class:`KeylessMobile` speaks the ``/mobile/...`` routes of the simulated platform: the
project's documented stand-in for the non-public Mobile API (see simulators/keyless_cloud/).
"""

from blelock.vendors.keyless.cloud._client import PATHS
from blelock.vendors.keyless.cloud._problems import raise_for_problem
from blelock.vendors.keyless.cloud.admin import KeylessCloud
from blelock.vendors.keyless.cloud.auth import KeylessAuth
from blelock.vendors.keyless.cloud.mobile import KeylessMobile

__all__ = ["PATHS", "KeylessAuth", "KeylessCloud", "KeylessMobile", "raise_for_problem"]

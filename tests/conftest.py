"""Suite-wide setup for splitbrain's own tests.

Several tests stop real ``splitbrain run`` and ``serve`` processes with SIGINT, as
a user's Ctrl-C would. A process that a non-interactive shell starts in the
background (``cmd &`` in a CI script without job control) inherits SIGINT
*ignored*, and so does everything it starts: Python keeps an ignored SIGINT
ignored, so those runs never see the Ctrl-C and the tests hang until their
timeouts. A Python-level handler, unlike SIG_IGN, is reset to the default at
``exec``, so restoring Python's own handler here gives every child process the
default disposition back.
"""

from __future__ import annotations

import signal

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

"""Suite-wide setup for splitbrain's own tests.

Several tests stop real ``splitbrain run`` and ``serve`` processes with SIGINT, as
a user's Ctrl-C would. A process that a non-interactive shell starts in the
background (``cmd &`` in a CI script without job control) inherits SIGINT
*ignored*, and so does everything it starts: Python keeps an ignored SIGINT
ignored, so those runs never see the Ctrl-C and the tests hang until their
timeouts. A Python-level handler, unlike SIG_IGN, is reset to the default at
``exec``, so restoring Python's own handler here gives every child process the
default disposition back.

Hypothesis runs derandomized here by default (profile ``ci``): the suite's
verdict then depends on the code alone, never on which examples one run
happened to draw, so a green suite on one machine is green on CI's. Random
exploration is a separate, deliberate act: ``pytest --hypothesis-profile
explore`` or ``HYPOTHESIS_PROFILE=explore`` (random draws, each test's own
example count; repeat it to explore further); what it finds becomes a crafted regression
test. The CI failure that prompted this was a real checker bug that one random
draw in a few hundred hit.
"""

from __future__ import annotations

import os
import signal

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

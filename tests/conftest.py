import os

import torch

# Tests use small tensors: one thread is as fast as two and immune to oversubscription when
# several test processes (or a subprocess the tests start) share the machine.
torch.set_num_threads(1)
os.environ.setdefault("INVRIM_STRICT_PLUGINS", "1")

"""``pycuda.autoinit`` stand-in: like the real module, importing it makes a context on device 0 current in the
importing thread (the real one also pops it at exit; tests that import this pop it themselves)."""

import pycuda.driver as cuda

cuda.init()
context = cuda.Device(0).make_context()
device = context.get_device()

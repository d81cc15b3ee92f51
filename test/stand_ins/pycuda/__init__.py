"""The pycuda stand-in package: ``stand_ins.install`` puts it in ``sys.modules`` as ``pycuda`` for one test.
``driver.py`` is ``pycuda.driver``; ``autoinit.py`` is imported as ``pycuda.autoinit`` from this folder."""

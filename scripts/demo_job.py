"""A small GPU-style job for the demo: the main process loads the cu12
runtime the way frameworks do (ctypes, by the wheel's absolute path); a
multiprocessing worker then loads both the cu11 and the cu12 runtime, which is
the kind of mix-up culaunch exists to catch."""
import ctypes
import multiprocessing as mp
import os

import nvidia.cuda_runtime

LIB = os.path.join(list(nvidia.cuda_runtime.__path__)[0], "lib")


def runtime_version(soname):
    lib = ctypes.CDLL(os.path.join(LIB, soname))
    v = ctypes.c_int(0)
    status = lib.cudaRuntimeGetVersion(ctypes.byref(v))
    return f"{soname}: cudaRuntimeGetVersion -> status {status}, version {v.value}"


def worker():
    print("worker:", runtime_version("libcudart.so.11.0"))
    print("worker:", runtime_version("libcudart.so.12"))


if __name__ == "__main__":
    print("main:", runtime_version("libcudart.so.12"))
    p = mp.get_context("spawn").Process(target=worker)
    p.start()
    p.join()

"""Run a function in a fresh interpreter: a process holds one local stack (moto's backends and the
handlers' environment are global), and the session's may be up in this one."""

from __future__ import annotations


def in_own_process(function, *args):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()

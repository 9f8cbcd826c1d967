"""Code crossbar's router worker runs: this directory goes on the worker's Python path (router.router_config), and
its modules import nothing of pdserver, since they run in crossbar's own venv."""

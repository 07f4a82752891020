"""The local stack's generic core: one function of a SAM template run on this machine as Lambda and API Gateway
would run it. It knows a template, a function's logical id and its handler, and nothing of any one project.

- `template`: the template read with its intrinsic functions, values resolved at the parameters' defaults, and a
  function's settings (environment, timeout, memory, handler, code directory);
- `gateway`: the HTTP API stand-in (routes, JWT scopes and CORS from the template; payload 2.0 events);
- `workers` and `lambda_worker`: the pool of execution environments, each a process serving one event at a time;
- `api`: `LocalApi`, the three put together for one function;
- `aws_resources` and `moto_transactions`: an embedded moto server, and tables and secrets made as the template
  declares them.

Nothing is imported here: a function process imports `lambda_worker` alone, and starts no faster for more.
"""

"""`charnn serve`: an OpenAI-compatible completions API with continuous batching, and a web
playground, on Starlette and uvicorn.

    app.py         the ASGI app: routes, the models served, bearer-token and Host checks, errors
    completions.py POST /v1/completions: requests to engine streams, server-sent events
    protocol.py    the OpenAI completions format: request checking, responses, errors
    engine.py      continuous batching: one thread per model steps every stream in flight together
    picker.py      per-stream picking that draws exactly what `charnn sample --seed S` draws
    playground.py  the page at /
    server.py      running the app under uvicorn: the socket, SIGTERM, logging to stderr

    from charnn.serve.app import create_app
    app = create_app([charnn.load("checkpoints/lee")])          # any ASGI server can run it
"""

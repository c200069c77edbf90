"""The cold start baseline: a bare FastAPI app answering one JSON GET, as a Lambda handler by
Mangum, exactly as `cleave.serverless.handler` serves a unit."""

from mangum import Mangum

from bench.baseline import app

handler = Mangum(app, lifespan="off")

"""The baseline: a bare FastAPI app answering one JSON GET, served exactly like a Cleave unit."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/item")
async def item() -> dict[str, object]:
    return {
        "sku": "MUG-CLASSIC",
        "name": "Classic mug",
        "price": {"amount": 1200, "currency": "EUR"},
    }


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}

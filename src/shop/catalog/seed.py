"""Demo products for a first start: added only where the sku is missing."""

from __future__ import annotations

from cleave.service import ServiceContext
from shop.catalog import handlers, store
from shop.catalog.domain import ProductDraft

DEMO_PRODUCTS = [
    ("MUG-CLASSIC", "Classic mug", "A white stoneware mug, 330 ml.", 1200, 40),
    ("MUG-ENAMEL", "Enamel camping mug", "Blue enamel, chips with character.", 1500, 25),
    ("TEE-LOGO-M", "Logo T-shirt, M", "Organic cotton, medium.", 2500, 30),
    ("TEE-LOGO-L", "Logo T-shirt, L", "Organic cotton, large.", 2500, 30),
    ("HOODIE-GREY", "Grey hoodie", "Heavy fleece with a kangaroo pocket.", 5900, 15),
    ("CAP-BLACK", "Black cap", "Six panels, adjustable strap.", 1900, 20),
    ("SOCKS-STRIPE", "Striped socks", "Two pairs, sizes 39-42.", 900, 60),
    ("NOTEBOOK-A5", "A5 notebook", "Dotted pages, lay-flat binding.", 1400, 50),
    ("PEN-BRASS", "Brass pen", "Solid brass, refillable.", 3200, 12),
    ("STICKER-PACK", "Sticker pack", "Ten vinyl stickers.", 500, 100),
    ("TOTE-CANVAS", "Canvas tote", "Natural canvas, long handles.", 1600, 35),
    ("BOTTLE-STEEL", "Steel bottle", "Insulated, 750 ml.", 2800, 18),
    ("POSTER-MAP", "Service map poster", "A2 print of a service map.", 2200, 10),
    ("KEYCHAIN-OWL", "Owl keychain", "Die-cast, enamel eyes.", 800, 45),
    ("LAPTOP-SLEEVE", "Laptop sleeve", "Felt, fits 14 inches.", 3500, 14),
    ("DESK-MAT", "Desk mat", "Wool felt, 80 by 30 cm.", 4200, 9),
    ("COASTER-SET", "Coaster set", "Four cork coasters.", 1100, 22),
    ("BEANIE-NAVY", "Navy beanie", "Merino wool.", 2400, 16),
    ("APRON-DENIM", "Denim apron", "For the kitchen or the workshop.", 3900, 8),
    ("PUZZLE-500", "500-piece puzzle", "A map of the monolith, in pieces.", 2100, 11),
    ("CANDLE-CEDAR", "Cedar candle", "Soy wax, 40 hours.", 1800, 27),
    ("UMBRELLA-COMPACT", "Compact umbrella", "Folds to 25 cm.", 2700, 13),
    ("LIMITED-PRINT", "Limited print", "Signed, one of ten.", 9900, 10),
    ("SOLD-OUT-VINYL", "Sold-out vinyl", "Restocks soon.", 3000, 0),
]


async def seed(context: ServiceContext) -> int:
    added = 0
    async with context.unit_of_work() as uow:
        existing = await store.get_products(uow.connection, [sku for sku, *_ in DEMO_PRODUCTS])
        for sku, name, description, price, stock in DEMO_PRODUCTS:
            if sku not in existing:
                draft = ProductDraft(sku, name, description, price, "EUR", stock)
                await handlers.create_product(uow, draft)
                added += 1
    return added

"""TurnBatch: what arrives in one turn of the loop is delivered once, together, at its end."""

import asyncio

from brokers.pubsub import TurnBatch


async def test_items_of_one_turn_are_delivered_together_at_its_end():
    delivered: list[list[int]] = []
    batch: TurnBatch[int] = TurnBatch(delivered.append)
    for item in (1, 2, 3):
        batch.add(item)
    assert delivered == [] and len(batch) == 3
    await asyncio.sleep(0)
    assert delivered == [[1, 2, 3]]
    batch.add(4)
    await asyncio.sleep(0)
    assert delivered == [[1, 2, 3], [4]]


async def test_an_item_added_while_delivering_goes_in_the_next_batch():
    delivered: list[list[str]] = []

    def deliver(items: list[str]) -> None:
        delivered.append(items)
        if items == ["first"]:
            batch.add("again")

    batch: TurnBatch[str] = TurnBatch(deliver)
    batch.add("first")
    await asyncio.sleep(0)
    assert delivered == [["first"]]
    await asyncio.sleep(0)
    assert delivered == [["first"], ["again"]]


async def test_paused_items_wait_for_resume_and_flush_delivers_at_once():
    delivered: list[list[int]] = []
    batch: TurnBatch[int] = TurnBatch(delivered.append, paused=True)
    batch.add(1)
    await asyncio.sleep(0)
    assert delivered == [] and len(batch) == 1
    batch.resume()
    batch.add(2)
    await asyncio.sleep(0)
    assert delivered == [[1, 2]]

    batch.add(3)
    batch.flush()
    assert delivered == [[1, 2], [3]]
    await asyncio.sleep(0)
    assert delivered == [[1, 2], [3]]  # the scheduled delivery was called off

    batch.add(4)
    batch.pause()
    await asyncio.sleep(0)
    assert delivered == [[1, 2], [3]] and len(batch) == 1
    batch.discard()
    batch.resume()
    await asyncio.sleep(0)
    assert delivered == [[1, 2], [3]] and len(batch) == 0

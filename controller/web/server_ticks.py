"""The API server's own clock: uvicorn's main loop, woken once a second instead of ten times.

uvicorn's `Server.main_loop` sleeps 0.1 s between ticks only to notice `should_exit` soon; its
tick's work (the `Date` header's time, the request limit) is done once a second. Ten wake-ups a
second are most of what an idle API process does. Here the loop ticks once a second and is woken
at once when `should_exit` is set (by uvicorn's signal handler or by the controller's stop), so
shutting down is as prompt as before.
"""

import asyncio
import contextlib

import uvicorn

TICK_S = 1.0
# uvicorn's counter advances ten a second (its ticks are 0.1 s apart); `on_tick` reads it so.
_TICKS_PER_S = 10
_COUNTER_WRAP = 864000  # uvicorn's: a day of its ticks


class TickingServer(uvicorn.Server):
    """A uvicorn server whose main loop ticks every `TICK_S`, or at once when told to exit."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._exiting = asyncio.Event()
        self._should_exit = False
        super().__init__(config)

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        if not value:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop yet: nothing waits
            self._exiting.set()
            return
        # uvicorn sets it from a signal handler too: the loop wakes through its own queue.
        loop.call_soon_threadsafe(self._exiting.set)

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + _TICKS_PER_S) % _COUNTER_WRAP
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exiting.wait(), TICK_S)
            should_exit = await self.on_tick(counter)

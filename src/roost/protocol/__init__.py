"""The sans-I/O core: types, frames, codes and the sync machine. No asyncio, sockets or clocks here."""

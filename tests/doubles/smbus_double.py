"""A faithful double of smbus2.SMBus for the MAX17048: `read_word_data(addr,
reg)` returns the little-endian SMBus word of big-endian chip registers."""

from __future__ import annotations


class SMBus:
    def __init__(self, registers: dict[int, int], address: int = 0x36) -> None:
        self.registers = registers  # big-endian register values as the datasheet gives them
        self.address = address

    def read_word_data(self, i2c_addr: int, register: int) -> int:
        if i2c_addr != self.address:
            raise OSError(121, "Remote I/O error")  # what smbus2 raises for no ACK
        value = self.registers[register]
        return ((value & 0xFF) << 8) | (value >> 8)

"""The column layouts of the position exports this adapter reads, and how each row is told
apart: a holding, cash (a money-market core position, "Pending activity"), or a line to skip."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Layout:
    """Which header names hold what. ``price`` and ``value`` are alternatives: a row needs one."""

    title: str
    symbol: str
    quantity: str
    price: str | None = None
    value: str | None = None
    average_cost: str | None = None
    description: str | None = None
    # Symbols whose rows are cash, not a holding (sweep and money-market funds).
    cash_symbols: frozenset[str] = field(default_factory=frozenset)
    # Text in the symbol or description column that marks cash on its way in or out.
    pending_marks: tuple[str, ...] = ("PENDING ACTIVITY",)


# Fidelity: Accounts > Positions > Download ("Portfolio_Positions_<date>.csv").
FIDELITY = Layout(
    title="Fidelity",
    symbol="Symbol",
    quantity="Quantity",
    price="Last Price",
    value="Current Value",
    average_cost="Average Cost Basis",
    description="Description",
    cash_symbols=frozenset({"SPAXX", "FDRXX", "FZFXX", "SPRXX", "FCASH", "CORE"}),
)

# Vanguard: My Accounts > Balances & holdings > Download ("OfxDownload.csv"); its positions
# come first, then a blank line and the account's transactions, which are not read.
VANGUARD = Layout(
    title="Vanguard",
    symbol="Symbol",
    quantity="Shares",
    price="Share Price",
    value="Total Value",
    description="Investment Name",
    cash_symbols=frozenset({"VMFXX", "VMMXX", "VUSXX"}),
)

LAYOUTS = {"fidelity": FIDELITY, "vanguard": VANGUARD}

# The keys of a generic layout's column map, and which must be given.
COLUMN_KEYS = ("symbol", "quantity", "price", "value", "average_cost", "description")
REQUIRED_COLUMNS = ("symbol", "quantity")

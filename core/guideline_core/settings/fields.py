"""The constraints many settings share, each named once: a field declares its type as one
of these instead of repeating the bound."""

from typing import Annotated

from pydantic import Field

# A duration or a period: more than zero seconds.
Seconds = Annotated[float, Field(gt=0)]
# A number (of things, bytes or characters) that must be at least one.
Count = Annotated[int, Field(ge=1)]
# A cap or a retention where 0 is allowed (it turns the cap off, or keeps nothing back).
ZeroOrMore = Annotated[int, Field(ge=0)]
# A share of a whole, from 0 to 1.
Share = Annotated[float, Field(ge=0, le=1)]

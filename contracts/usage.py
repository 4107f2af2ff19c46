"""Model usage of a job attempt, as the conductor's model gateway counted it from the providers' answers,
and what it cost by the configured price table (`CONDUCTOR_MODEL_PRICES`)."""

from pydantic import BaseModel, Field


class ModelUsage(BaseModel):
    requests: int = 0
    input_tokens: int = 0
    # Part of input_tokens the provider served from its prompt cache.
    cached_input_tokens: int = 0
    output_tokens: int = 0
    # US dollars by the price table; 0 for models it does not list (requests_unpriced counts those).
    cost_usd: float = 0.0
    requests_unpriced: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def plus(self, other: "ModelUsage") -> "ModelUsage":
        return ModelUsage(
            requests=self.requests + other.requests,
            input_tokens=self.input_tokens + other.input_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 9),
            requests_unpriced=self.requests_unpriced + other.requests_unpriced,
        )

    def render(self) -> str:
        cost = f", ${self.cost_usd:.6f}" if self.cost_usd or not self.requests_unpriced else ""
        unpriced = (
            f" ({self.requests_unpriced} request(s) of unpriced models)" if self.requests_unpriced else ""
        )
        return (
            f"{self.requests} model request(s), {self.input_tokens} input tokens "
            f"({self.cached_input_tokens} cached), {self.output_tokens} output tokens{cost}{unpriced}"
        )


class ModelPrice(BaseModel):
    """A model's list price in US dollars per million tokens, as the provider publishes it."""

    input_per_mtok: float = Field(ge=0)
    # Cached input tokens are billed at this rate instead of input_per_mtok; unset: the input rate.
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    output_per_mtok: float = Field(ge=0)

    def cost_usd(self, usage: ModelUsage) -> float:
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        cached_rate = (
            self.input_per_mtok if self.cached_input_per_mtok is None else self.cached_input_per_mtok
        )
        micro = (
            (usage.input_tokens - cached) * self.input_per_mtok
            + cached * cached_rate
            + usage.output_tokens * self.output_per_mtok
        )
        return round(micro / 1_000_000, 9)


def priced(usage: ModelUsage, model: str, prices: dict[str, ModelPrice]) -> ModelUsage:
    """One answer's usage with its cost; a model missing from the table is counted as unpriced."""
    price = prices.get(model)
    if price is None:
        return usage.model_copy(update={"cost_usd": 0.0, "requests_unpriced": usage.requests})
    return usage.model_copy(update={"cost_usd": price.cost_usd(usage), "requests_unpriced": 0})

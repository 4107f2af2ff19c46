"""Model usage of a job attempt, as the conductor's model gateway counted it from the providers' answers."""

from pydantic import BaseModel


class ModelUsage(BaseModel):
    requests: int = 0
    input_tokens: int = 0
    # Part of input_tokens the provider served from its prompt cache.
    cached_input_tokens: int = 0
    output_tokens: int = 0

    def plus(self, other: "ModelUsage") -> "ModelUsage":
        return ModelUsage(
            requests=self.requests + other.requests,
            input_tokens=self.input_tokens + other.input_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )

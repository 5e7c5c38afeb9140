"""How a function reaches VirusTotal: the enrich function, and the approval function with VT Augment."""

from pydantic import Field, SecretStr, field_validator

from vtriage.config import Settings, empty_is_unset, https_only

DEFAULT_VT_BASE_URL = "https://www.virustotal.com/api/v3"


class VirusTotalKeySettings(Settings):
    """How a function reaches VirusTotal: the API key, from Secrets Manager (VT_API_KEY_SECRET_NAME) or
    given for local runs (VT_API_KEY), and the API's root (VT_BASE_URL: a gateway's, or the replay
    server's). Shared by the enrich function and, with VT Augment, the approval function."""

    vt_api_key_secret: str | None = Field(default=None, alias="VT_API_KEY_SECRET_NAME")
    vt_api_key: SecretStr | None = Field(default=None, alias="VT_API_KEY")
    vt_base_url: str = Field(default=DEFAULT_VT_BASE_URL, alias="VT_BASE_URL")

    @field_validator("vt_base_url")
    @classmethod
    def _vt_over_https(cls, value: str) -> str:
        return https_only(value)

    _empty_secret_name_is_unset = empty_is_unset("vt_api_key_secret")

    @field_validator("vt_api_key", mode="before")
    @classmethod
    def _key_without_whitespace(cls, value: object) -> object:
        # A key pasted with its line end would make VirusTotal answer 401 to every lookup.
        if isinstance(value, str):
            return value.strip() or None
        return value

    def key_source_problem(self) -> str | None:
        """What is missing for the key to be read, or None."""
        if not self.vt_api_key and not self.vt_api_key_secret:
            return "set VT_API_KEY_SECRET_NAME (Secrets Manager) or VT_API_KEY (local runs)"
        return None

"""How a function reaches VirusTotal: the enrich function, and the approval function with VT Augment."""

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from vtriage.config import Settings, empty_is_unset, https_url_problem

VT_API_ROOT = "/api/v3"
DEFAULT_VT_BASE_URL = f"https://www.virustotal.com{VT_API_ROOT}"


def vt_base_url_problem(url: str) -> str | None:
    """Why VT_BASE_URL cannot be VirusTotal's API root, or None: not https (http on loopback alone, see
    `https_url_problem`), or a path that does not end in /api/v3. The client appends `/domains/<name>`
    and the like to it, so a root without /api/v3 (vt-py's `host=` convention) would ask for paths
    VirusTotal answers 404 NotFoundError, and every IOC would read as never seen. A URL carrying a user
    name or password is refused without being repeated: VirusTotal takes its key in a header, and the URL
    is shown wherever a run says where VirusTotal answers from."""
    parts = urlsplit(url.strip())
    if parts.username is not None or parts.password is not None:
        return (
            "must carry no user name or password (VirusTotal takes its key from VT_API_KEY or "
            "VT_API_KEY_SECRET_NAME, in a header); the URL is not repeated here"
        )
    problem = https_url_problem(url)
    if problem:
        return f"{problem}: {url.strip()[:200]!r}"
    if parts.path.rstrip("/").endswith(VT_API_ROOT) and not parts.query and not parts.fragment:
        return None
    extra = ", with no query or fragment" if parts.query or parts.fragment else ""
    return f"must end in {VT_API_ROOT} (VirusTotal API v3's root){extra}, got {url.strip()[:200]!r}"


class VirusTotalKeySettings(Settings):
    """How a function reaches VirusTotal: the API key, from Secrets Manager (VT_API_KEY_SECRET_NAME) or
    given for local runs (VT_API_KEY), and the API's root (VT_BASE_URL: a gateway's, or the replay
    server's). Shared by the enrich function and, with VT Augment, the approval function."""

    vt_api_key_secret: str | None = Field(default=None, alias="VT_API_KEY_SECRET_NAME")
    vt_api_key: SecretStr | None = Field(default=None, alias="VT_API_KEY")
    vt_base_url: str = Field(default=DEFAULT_VT_BASE_URL, alias="VT_BASE_URL")

    @field_validator("vt_base_url")
    @classmethod
    def _vt_api_root(cls, value: str) -> str:
        problem = vt_base_url_problem(value)
        if problem:
            raise ValueError(problem)
        return value.strip()

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

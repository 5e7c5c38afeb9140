"""Where a deployment acts, as the enrich and remediate functions read it: its own account, its member
accounts and the Regions it acts in (each list checked at start-up), and its own CrowdStrike Falcon tenant."""

import re

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from vtriage.config import Settings
from vtriage.eligibility import Place, falcon_cid

# What a member account id and a Region name may look like: checked at start-up, so that a typo stops the
# function instead of leaving an account or Region silently unacted on.
_ACCOUNT_ID = re.compile(r"\d{12}")
_REGION_NAME = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")


def _listed(value: object, pattern: re.Pattern[str], one: str, many: str) -> object:
    """A comma-separated variable as a tuple of its values (each stripped, each once, in order); every
    value must match `pattern`, else the error names the values that do not: "'12345' is not `one`",
    "'1', '2' are not `many`"."""
    if not isinstance(value, str):
        return value
    values = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    bad = [repr(part[:40]) for part in values if not pattern.fullmatch(part)]
    # The values go in as context, never into the template, whose braces would be read as placeholders.
    if len(bad) == 1:
        raise PydanticCustomError("listed", "{bad} is not {what}", {"bad": bad[0], "what": one})
    if bad:
        raise PydanticCustomError("listed", "{bad} are not {what}", {"bad": ", ".join(bad[:5]), "what": many})
    return values


class FalconTenantSettings(Settings):
    """The deployment's own CrowdStrike Falcon tenant (FALCON_CID): the only one whose hosts it contains
    (`contain_host`); unset, it contains no host. The console's form (capitals, with the two-digit
    checksum: `0123...CDEF-1A`) and the API's (32 lower-case hexadecimal digits) are both taken."""

    falcon_cid: str | None = Field(default=None, alias="FALCON_CID")

    @field_validator("falcon_cid", mode="before")
    @classmethod
    def _falcon_cid_form(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None
        cid = falcon_cid(value)
        if cid is None:
            raise ValueError("a Falcon customer id is 32 hexadecimal digits (the console's may end in -XX)")
        return cid


class PlaceSettings(FalconTenantSettings):
    """Where a deployment acts, as the enrich and remediate functions read it: its own account
    (`!Ref AWS::AccountId`) and its member accounts (MemberAccountIds), in the Regions ActRegions lists
    (every Region when empty); its own Falcon tenant's hosts. Each list is checked at start-up. A finding
    of any other account or Region is given no action: it is ticketed with the reason."""

    own_account_id: str = Field(alias="OWN_ACCOUNT_ID", pattern=r"^\d{12}$")
    member_account_ids: tuple[str, ...] = Field(default=(), alias="MEMBER_ACCOUNT_IDS")
    act_regions: tuple[str, ...] = Field(default=(), alias="ACT_REGIONS")

    @field_validator("member_account_ids", mode="before")
    @classmethod
    def _account_ids(cls, value: object) -> object:
        return _listed(value, _ACCOUNT_ID, "a 12-digit account id", "12-digit account ids")

    @field_validator("act_regions", mode="before")
    @classmethod
    def _region_names(cls, value: object) -> object:
        return _listed(
            value, _REGION_NAME, "a Region name (such as eu-west-1)", "Region names (such as eu-west-1)"
        )

    @property
    def place(self) -> Place:
        """Where this deployment acts: its own account and its members (never itself twice), in the
        Regions allowed; its own Falcon tenant's hosts."""
        return Place(
            own_account=self.own_account_id,
            members=frozenset(self.member_account_ids) - {self.own_account_id},
            regions=frozenset(self.act_regions),
            falcon_cid=self.falcon_cid,
        )

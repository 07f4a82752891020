"""The public contract: what callers send and what they get back.

The request model mirrors the Dots create-payout-link contract and is strict: JSON types must match exactly
(`10.5`, `"100"` and `true` are not amounts) and unknown fields are rejected so that typos surface. An explicit
`null` on an optional field means the same as leaving the field out. No string that is forwarded may hold a
control character or a line separator. Every free-text string is held in Unicode normalization form C (NFC)
from the moment it is read, so that text written composed (`é`, U+00E9) or decomposed (`e` and U+0301) is one
request: one fingerprint, one upstream key, one payload forwarded.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails

from payout_links.problems import PROBLEM_TYPE_PREFIX, FieldError, Limit, MalformedJson, ValidationFailed

# C0 controls (tab and line breaks included), DEL, C1 controls, the Unicode line and paragraph separators, and the
# bidirectional embeddings, overrides and isolates: forwarded, they would reach the payee's SMS and email, where
# they end or start a line, hide text, or reorder what is read. Joiners stay: names in several scripts need them.
_CONTROLS = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[{_CONTROLS}]")
_PLAIN_TEXT = f"^[^{_CONTROLS}]*$"
_EMAIL_CHARACTER = rf"[^@\s{_CONTROLS}]"


def _refuse_controls(value: object) -> object:
    if isinstance(value, str) and _CONTROL.search(value):
        raise ValueError("must not contain control characters or line separators")
    return value


def _composed(value: object) -> object:
    return unicodedata.normalize("NFC", value) if isinstance(value, str) else value


# On every string type that is forwarded upstream. A before-validator wraps the type's own constraints and the
# annotations before it, so it runs before them: the error names the control character rather than a length or a
# format. The patterns refuse them too: that is what the OpenAPI document shows, where a validator does not appear.
NoControls = BeforeValidator(_refuse_controls)
# The last annotation of every free-text string type, so it runs first of all: nothing (the control check, the
# pattern, the length, the fingerprint, the upstream) sees the text as sent, only its NFC form. Length limits
# (max_length, and the email's 64-character local part) count the code points of the NFC text, what is forwarded:
# `é` counts one however it was sent, and the rare character that NFC decomposes (U+0958) counts two. NFC, not
# NFKC: compatibility characters (a no-break space, a ligature) are the caller's to choose and are kept.
Composed = BeforeValidator(_composed)

UserId = Annotated[str, Field(min_length=1, max_length=100, pattern=_PLAIN_TEXT), NoControls, Composed]
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=_PLAIN_TEXT), NoControls, Composed]
Email = Annotated[
    str,
    Field(max_length=254, pattern=rf"^{_EMAIL_CHARACTER}{{1,64}}@{_EMAIL_CHARACTER}+\.{_EMAIL_CHARACTER}+$"),
    NoControls,
    Composed,
]
CountryCode = Annotated[str, Field(pattern=r"^[0-9]{1,3}$"), NoControls]
PhoneNumber = Annotated[str, Field(pattern=r"^[0-9]{4,15}$"), NoControls]
Message = Annotated[str, Field(min_length=1, max_length=500, pattern=_PLAIN_TEXT), NoControls, Composed]
Memo = Annotated[str, Field(max_length=500, pattern=_PLAIN_TEXT), NoControls, Composed]
MetadataKey = Annotated[str, Field(min_length=1, max_length=40, pattern=_PLAIN_TEXT), NoControls, Composed]
MetadataValue = Annotated[str, Field(max_length=500, pattern=_PLAIN_TEXT), NoControls, Composed]

# Exactly an int or a bool, never a value that could be converted to one ("100", 1.0, 1).
StrictInt = Annotated[int, Field(strict=True)]
StrictBool = Annotated[bool, Field(strict=True)]

DeliveryMethod = Literal["sms", "link", "email", "all"]
AdditionalStep = Literal[
    "compliance", "id-verification", "background-check", "manage-payments", "manage-payouts", "payout", "redirect"
]
PayoutFeeParty = Literal["user", "platform"]
PayoutLinkStatus = Literal[
    "created", "delivery_pending", "delivery_failed", "sent", "delivered", "claimed", "reversed", "canceled", "expired"
]
PAYOUT_LINK_STATUSES: frozenset[str] = frozenset(get_args(PayoutLinkStatus))

MAX_METADATA_KEYS = 50


class _StrictModel(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Payee(_StrictModel):
    country_code: CountryCode
    phone_number: PhoneNumber
    first_name: Name | None = None
    last_name: Name | None = None
    email: Email | None = None


class Delivery(_StrictModel):
    method: DeliveryMethod
    message: Message | None = None


class CreatePayoutLinkRequest(_StrictModel):
    """The body of `POST /payout-links`, and the `data` of a partner's `payout_link.create` event."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "amount": 2500,
                    "payee": {"country_code": "1", "phone_number": "5555550123", "first_name": "Ada"},
                    "delivery": {"method": "sms", "message": "Your payout is ready"},
                    "metadata": {"order": "A-1001"},
                }
            ]
        }
    )

    amount: StrictInt = Field(gt=0, description="Amount in cents; at most the deployment's MAX_AMOUNT_CENTS.")
    user_id: UserId | None = None
    payee: Payee | None = None
    delivery: Delivery | None = None
    force_collect_compliance_information: StrictBool | None = False
    additional_steps: list[AdditionalStep] | None = None
    tax_exempt: StrictBool | None = None
    # The keys' pattern becomes `patternProperties` in the JSON schema: only `additionalProperties: false` makes a
    # key that does not match it invalid there, as it is here.
    metadata: (
        Annotated[
            dict[MetadataKey, MetadataValue],
            Field(max_length=MAX_METADATA_KEYS, json_schema_extra={"additionalProperties": False}),
        ]
        | None
    ) = None
    memo: Memo | None = None
    idempotency_key: uuid.UUID | None = None
    payout_fee_party: PayoutFeeParty | None = None

    @field_validator("metadata", mode="before")
    @classmethod
    def _one_key_per_text(cls, value: object) -> object:
        # Composed, two spellings of one key would become one key, and one of their values would be dropped.
        if isinstance(value, dict):
            seen: set[object] = set()
            for key in value:
                text = _composed(key)
                if text in seen:
                    raise ValueError(f"the key {text!r} is given twice, in two Unicode spellings")
                seen.add(text)
        return value

    @field_validator("force_collect_compliance_information")
    @classmethod
    def _null_means_default(cls, value: bool | None) -> bool:
        # Like every optional field, null means "not set"; here that is the upstream's default, false.
        return False if value is None else value

    @field_validator("amount")
    @classmethod
    def _within_cap(cls, amount: int, info: ValidationInfo) -> int:
        cap = (info.context or {}).get("max_amount_cents")
        if cap is None:
            raise ValueError("no amount cap was configured")
        if amount > cap:
            raise ValueError(f"Input should be less than or equal to {cap}")
        return amount

    def consistency_errors(self) -> list[FieldError]:
        """Rules that tie fields together, each pointing at the field the caller has to add or fix."""
        errors: list[FieldError] = []
        if self.user_id is None and self.payee is None:
            errors.append(FieldError("#/user_id", "user_id or payee is required"))
        method = self.delivery.method if self.delivery else None
        if method in ("sms", "all") and self.payee is None:
            errors.append(FieldError("#/payee", f"delivery by {method} needs the payee's phone number"))
        if method in ("email", "all") and (self.payee is None or self.payee.email is None):
            errors.append(FieldError("#/payee/email", f"delivery by {method} needs the payee's email"))
        seen: set[str] = set()
        for index, step in enumerate(self.additional_steps or ()):
            if step in seen:
                errors.append(FieldError(f"#/additional_steps/{index}", f"{step!r} is listed twice"))
            seen.add(step)
        return errors

    def upstream_payload(self) -> dict[str, Any]:
        """What the request asks the upstream for, in canonical form: only the fields the caller set to a
        non-default value, without the caller's idempotency key. It is both what is forwarded and what the
        idempotency fingerprint is taken of, so two bodies that ask for the same thing are the same intent."""
        return self.model_dump(mode="json", exclude_defaults=True, exclude={"idempotency_key"})


_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339(value: str) -> str:
    try:
        if _RFC3339.fullmatch(value):
            datetime.fromisoformat(value.upper())  # a real date and time, not only the right shape
            return value
    except ValueError:
        pass
    raise ValueError("must be an RFC 3339 date-time with a zone, such as 2026-11-24T23:50:00Z")


class PartnerEvent(_StrictModel):
    """The body of `POST /webhooks/{partner}/payout-links`: a Standard Webhooks envelope whose `data` is the
    body of `POST /payout-links`, held to the same model and rules."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "payout_link.create",
                    "timestamp": "2026-11-24T23:50:00Z",
                    "data": {"amount": 2500, "user_id": "acme-user-42", "delivery": {"method": "link"}},
                }
            ]
        }
    )

    type: Literal["payout_link.create"]
    timestamp: Annotated[str, AfterValidator(_rfc3339)] = Field(json_schema_extra={"format": "date-time"})
    data: CreatePayoutLinkRequest

    def consistency_errors(self) -> list[FieldError]:
        return [
            FieldError("#/data" + error.pointer.removeprefix("#"), error.detail)
            for error in self.data.consistency_errors()
        ]


def parse_create_request(body: str | bytes, *, max_amount_cents: int) -> CreatePayoutLinkRequest:
    """Validate the JSON body of `POST /payout-links`; raise `MalformedJson` (400) or `ValidationFailed` (422)
    with pointers."""
    return _parse(CreatePayoutLinkRequest, body, max_amount_cents=max_amount_cents)


def parse_partner_event(body: str | bytes, *, max_amount_cents: int) -> PartnerEvent:
    """Validate a partner's event the same way; pointers reach into the envelope (`#/data/amount`)."""
    return _parse(PartnerEvent, body, max_amount_cents=max_amount_cents)


def _parse[M: (CreatePayoutLinkRequest, PartnerEvent)](
    model: type[M], body: str | bytes, *, max_amount_cents: int
) -> M:
    try:
        parsed = model.model_validate_json(body, context={"max_amount_cents": max_amount_cents})
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        if any(error["type"] == "json_invalid" for error in errors):
            raise MalformedJson("The body could not be parsed as JSON.") from None
        raise ValidationFailed(
            "One or more fields are invalid.", errors=tuple(_field_error(error) for error in errors)
        ) from None
    if problems := parsed.consistency_errors():
        raise ValidationFailed("One or more fields are invalid.", errors=tuple(problems))
    return parsed


# GET /payout-links: how many links a page holds, unless the caller asks for another number within the bounds.
DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 100
LIST_QUERY_PARAMETERS = frozenset({"limit", "cursor"})
_LIMIT = re.compile(r"[0-9]{1,3}")


@dataclass(frozen=True)
class ListQuery:
    """The query of `GET /payout-links`: the page size, and the cursor of the page to read (None: the first)."""

    limit: int = DEFAULT_LIST_LIMIT
    cursor: str | None = None


def parse_list_query(parameters: Mapping[str, str]) -> ListQuery:
    """Validate the query string of `GET /payout-links`; raise `ValidationFailed` (422) with a pointer per bad
    parameter (`#/limit`), as for a body. The cursor is only the owners' to read (`InvalidCursor`, 400)."""
    errors = [
        FieldError("#/" + name.replace("~", "~0").replace("/", "~1"), "Unknown query parameter")
        for name in sorted(parameters.keys() - LIST_QUERY_PARAMETERS)
    ]
    limit = DEFAULT_LIST_LIMIT
    if "limit" in parameters:
        text = parameters["limit"]
        if _LIMIT.fullmatch(text) and 1 <= int(text) <= MAX_LIST_LIMIT:
            limit = int(text)
        else:
            errors.append(FieldError("#/limit", f"must be an integer from 1 to {MAX_LIST_LIMIT}"))
    if errors:
        raise ValidationFailed("One or more query parameters are invalid.", errors=tuple(errors))
    return ListQuery(limit=limit, cursor=parameters.get("cursor"))


def _field_error(error: ErrorDetails) -> FieldError:
    # A bad metadata key is reported at "metadata/<key>/[key]"; the pointer names the key itself.
    location = [str(part) for part in error["loc"] if part != "[key]"]
    pointer = "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in location)
    message = error["msg"].removeprefix("Value error, ")
    return FieldError(pointer if location else "#", message)


class _ResponseModel(BaseModel):
    # Nothing but the listed keys is ever sent; the OpenAPI document says so.
    model_config = ConfigDict(extra="forbid")


class LinkPayee(_ResponseModel):
    first_name: str | None
    last_name: str | None
    email: str | None
    country_code: str | None
    phone_number: str | None


class LinkDelivery(_ResponseModel):
    method: str | None
    email: str | None
    country_code: str | None
    phone_number: str | None


class PayoutLink(_ResponseModel):
    """The normalized 201 body: every key is always present, null when the upstream did not say."""

    id: str
    created: str | None = Field(description="RFC 3339, UTC, with a Z suffix")
    link: str | None
    amount: int | None = Field(description="Integer cents")
    status: PayoutLinkStatus | None
    payee: LinkPayee | None
    delivery: LinkDelivery | None
    tax_exempt: bool | None
    claimed_user_id: str | None
    flow_id: str | None
    metadata: dict[str, str]


class PayoutLinkSummary(_ResponseModel):
    """One link of a list, as recorded when its create completed; `GET /payout-links/{id}` reads its status."""

    model_config = ConfigDict(defer_build=True)  # for the OpenAPI document: the function answers dicts

    id: str
    amount: int | None = Field(description="Integer cents")
    created: str = Field(
        description="RFC 3339, UTC, to the millisecond, with a Z suffix: the link's own `created`, or when the proxy "
        "recorded it if the payout provider did not say",
        examples=["2026-12-07T02:40:56.895Z"],
    )
    idempotency_key: str = Field(description="The idempotency key the link was created with, as the proxy keys it")
    link: str | None = Field(description="The payout link's URL")


class PayoutLinkList(_ResponseModel):
    """The 200 body of `GET /payout-links`: a page of the caller's links, newest first."""

    model_config = ConfigDict(defer_build=True)

    items: list[PayoutLinkSummary]
    next_cursor: str | None = Field(
        description="Send it as `cursor` for the next page; null on the last page. Opaque, and valid only for the "
        "caller it was given to."
    )


# The problem body, for the OpenAPI document and the tests. The function renders problems from `Problem` itself,
# so these schemas are only built when asked for (defer_build) and cost the cold start nothing.
class ProblemFieldError(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    pointer: str = Field(
        description="JSON pointer into the request body (the query parameters, for a list), as a URI fragment",
        examples=["#/amount"],
    )
    detail: str


class ProblemDetails(BaseModel):
    """An RFC 9457 problem (`application/problem+json`): the body of every error the function answers."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    type: str = Field(pattern=f"^{PROBLEM_TYPE_PREFIX}[a-z-]+$", examples=[f"{PROBLEM_TYPE_PREFIX}validation-failed"])
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    request_id: str | None = Field(
        default=None,
        description="API Gateway's id of the request, also sent as the `apigw-requestid` header: quote it to "
        "support. Absent only when the function is invoked without API Gateway.",
        examples=["Xyz1AbCdIAMEYqy="],
    )
    errors: list[ProblemFieldError] = Field(
        default_factory=list, description="Present on field validation errors only: one entry per invalid field."
    )
    limit: Limit | None = Field(
        default=None,
        description="Present on `limit-exceeded` only: the caller's limit that refused the create, its amount per "
        "UTC day or its links per UTC hour; `Retry-After` is the seconds until that window ends.",
        examples=[Limit.DAILY_AMOUNT.value],
    )
    # The values of store.KeyState (a test holds them equal); not imported, so that the models need no store.
    key_state: Literal["bound", "released", "spent"] | None = Field(
        default=None,
        description="Present on the problems of a create that reached its idempotency key: where it left the key. "
        "`bound`: a link may exist; retry with the same key and the same body until a definite answer (if you do "
        "not, the proxy resends it itself within SETTLE_AFTER_SECONDS and one schedule period, about 3 minutes by "
        "default, and a retry then gets the link it recorded, which GET /payout-links lists too); never make this "
        "payout with another key meanwhile: "
        "to change it, get its link that way and cancel it first. `released`: nothing was made; "
        "the key is free, for this body or a corrected one. `spent`: this key will never make a link; a new request "
        "needs a new key. A 5xx without `key_state` (API Gateway's own, or `internal-error`) is to be taken as "
        "`bound`.",
        examples=["bound"],
    )

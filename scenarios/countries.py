"""ISO 3166-1 alpha-2 country codes, and the named region sets a scenario may use.

Named sets stand in scenario files where a list of codes would otherwise be repeated
(``regions: [unsupported_mid_2024]``). ``unsupported_mid_2024`` is the list in ../shared/FACTS.md:
OpenAI's unsupported countries and territories in mid-2024 that a country code can express
(Crimea, Donetsk and Luhansk are sub-national and cannot be).
"""

from __future__ import annotations

ISO_ALPHA2: frozenset[str] = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
    BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
    EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
    HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
    LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
    NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
    TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
    """.split()
)

NAMED_REGION_SETS: dict[str, frozenset[str]] = {
    "unsupported_mid_2024": frozenset("CN HK MO RU BY IR KP SY CU VE".split()),
    "all": ISO_ALPHA2,
}


def expand_regions(items: tuple[str, ...] | list[str]) -> frozenset[str]:
    """Country codes named by ``items`` (codes and named sets, already validated)."""
    out: set[str] = set()
    for item in items:
        out |= NAMED_REGION_SETS.get(item, frozenset({item}))
    return frozenset(out)


def region_item_error(item: str) -> str | None:
    """Why ``item`` is not a country code or named set, or None when it is fine."""
    if item in NAMED_REGION_SETS or item in ISO_ALPHA2:
        return None
    if item.upper() in ISO_ALPHA2:
        return f"{item!r} must be upper-case ({item.upper()!r})"
    sets = ", ".join(sorted(NAMED_REGION_SETS))
    return f"{item!r} is not an ISO 3166-1 alpha-2 code or a named set ({sets})"

"""Adapters: one module per receiver kind, all behind ``adapters.base.Adapter``."""

from __future__ import annotations

from adapters.base import Adapter
from alertd.cap_signature import CapSigner
from alertd.models import AdapterKind


def registry(
    call_signs: dict[str, str] | None = None,
    *,
    cap_signer: CapSigner | None = None,
    smtp_ca_file: str | None = None,
) -> dict[AdapterKind, Adapter]:
    from adapters.broadcaster import BroadcasterAdapter
    from adapters.cbc import CbcAdapter
    from adapters.isp import IspAdapter
    from adapters.mail import EmailAdapter
    from adapters.radio import RadioAdapter
    from adapters.relay import AppriseAdapter
    from adapters.signage import SignageAdapter

    return {
        AdapterKind.BROADCASTER: BroadcasterAdapter(cap_signer),
        AdapterKind.ISP: IspAdapter(),
        AdapterKind.SIGNAGE: SignageAdapter(),
        AdapterKind.RADIO: RadioAdapter(call_signs),
        AdapterKind.EMAIL: EmailAdapter(smtp_ca_file),
        AdapterKind.APPRISE: AppriseAdapter(),
        AdapterKind.CBC: CbcAdapter(cap_signer),
    }

"""`edgeloop api-key create|revoke|list PROJECT`, `edgeloop portal create|revoke|list` and
`edgeloop intake-threshold PROJECT VALUE`."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("api-key", help="project API keys for the ingestion API")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = sub.add_parser("create", help="a new key (printed once) and the project's HMAC key")
    c.add_argument("project", metavar="PROJECT")
    c.add_argument("--json", action="store_true")
    c.set_defaults(handler=cmd_key_create)
    r = sub.add_parser("revoke", help="revoke one key (--id) or every key of the project")
    r.add_argument("project", metavar="PROJECT")
    r.add_argument("--id", type=int, dest="key_id", help="the key's id (see `api-key list`)")
    r.set_defaults(handler=cmd_key_revoke)
    ls = sub.add_parser("list", help="the project's keys (ids and prefixes, never the keys)")
    ls.add_argument("project", metavar="PROJECT")
    ls.set_defaults(handler=cmd_key_list)

    p = subparsers.add_parser("portal", help="upload portals for outside parties")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = sub.add_parser("create", help="a portal; prints its link (holding its token)")
    c.add_argument("name", metavar="NAME")
    c.add_argument("--description", default="")
    c.add_argument("--bucket-path", required=True, help="s3://BUCKET/PREFIX the uploads go to")
    c.add_argument("--conn-id", default="aws_default", help="the Airflow AWS connection")
    c.add_argument("--expires-in-days", type=float, help="the link stops working after this")
    c.add_argument("--base-url", help="the api-server's URL (default EDGELOOP_API_URL)")
    c.set_defaults(handler=cmd_portal_create)
    r = sub.add_parser("revoke", help="the portal's link stops working")
    r.add_argument("name", metavar="NAME")
    r.set_defaults(handler=cmd_portal_revoke)
    ls = sub.add_parser("list", help="the portals")
    ls.set_defaults(handler=cmd_portal_list)

    p = subparsers.add_parser(
        "intake-threshold",
        help="the project's device-output threshold (an image is kept when its lowest "
        "top-class probability is under it; default 0.8)",
    )
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("value", type=float, metavar="VALUE")
    p.set_defaults(handler=cmd_threshold)


def _catalog():
    from edgeloop.catalog.store import Catalog

    return Catalog.from_settings()


def cmd_key_create(args: argparse.Namespace) -> int:
    from edgeloop.web.keys import create_api_key

    key = create_api_key(_catalog(), args.project)
    if args.json:
        print(json.dumps(key))
        return 0
    print(f"API key {key['id']} for project {args.project} (shown once; stored hashed):")
    print(f"  x-api-key: {key['api_key']}")
    print(f"HMAC key of the project (signs data acquisition documents): {key['hmac_key']}")
    return 0


def cmd_key_revoke(args: argparse.Namespace) -> int:
    from edgeloop.web.keys import revoke_api_keys

    n = revoke_api_keys(_catalog(), args.project, key_id=args.key_id)
    print(f"revoked {n} API key(s) of project {args.project}")
    return 0


def cmd_key_list(args: argparse.Namespace) -> int:
    from edgeloop.web.keys import list_api_keys

    for k in list_api_keys(_catalog(), args.project):
        state = f"revoked {k['revoked_at']:%Y-%m-%d}" if k["revoked_at"] else "live"
        print(f"{k['id']}\t{k['prefix']}…\t{k['created_at']:%Y-%m-%d %H:%M}\t{state}")
    return 0


def cmd_portal_create(args: argparse.Namespace) -> int:
    from edgeloop.catalog.tables import now
    from edgeloop.settings import get_settings
    from edgeloop.web.portals import create_portal, portal_link

    expires = now() + timedelta(days=args.expires_in_days) if args.expires_in_days else None
    portal, token = create_portal(
        _catalog(),
        args.name,
        bucket_path=args.bucket_path,
        description=args.description,
        conn_id=args.conn_id,
        expires_at=expires,
    )
    print(f"portal {portal['name']} → {portal['bucket_path']}")
    print(portal_link(portal["id"], token, args.base_url or get_settings().api_url))
    return 0


def cmd_portal_revoke(args: argparse.Namespace) -> int:
    from edgeloop.web.portals import revoke_portal

    revoke_portal(_catalog(), args.name)
    print(f"portal {args.name} revoked")
    return 0


def cmd_portal_list(args: argparse.Namespace) -> int:
    from edgeloop.web.portals import list_portals

    for p in list_portals(_catalog()):
        state = "revoked" if p["revoked_at"] else "open"
        print(f"{p['id']}\t{p['name']}\t{p['bucket_path']}\t{state}\t{p['description']}")
    return 0


def cmd_threshold(args: argparse.Namespace) -> int:
    from edgeloop.web.keys import set_threshold

    value = set_threshold(_catalog(), args.project, args.value)
    print(f"{args.project}: device-output threshold {value}")
    return 0

"""Member registry use cases: the org tree, members, the hardship register and CSV imports."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit
from core.auth import Actor
from core.crypto import FieldCipher, mask_id_number, mask_phone
from core.db import utcnow
from core.errors import Conflict, NotFound, ValidationFailed
from core.i18n import N_
from core.ids import new_public_id
from core.models import AuditEvent, Role
from core.pagination import Page, paginate
from members.models import (UNION_KINDS_BY_DEPTH, HardshipRecord, ImportStatus, Member, MemberImport,
                            MemberImportRow, MemberStatus, RowStatus, Union)
from members.validators import (InvalidValue, normalize_id_number, normalize_phone, validate_id_number,
                                validate_phone, validate_region)

ID_CONTEXT = "member.id_number"
PHONE_CONTEXT = "member.phone"
IMPORT_COLUMNS = ("name", "id_number", "phone", "union_id")
IMPORT_OPTIONAL = ("join_date",)
IMPORT_CHUNK = 500
# A chunk is redone when a concurrent writer registered one of its ID numbers first; past this, give up.
IMPORT_CHUNK_ATTEMPTS = 3
# A queued or running import not (re)started for this long counts as stalled and may be resumed; should its
# run still be alive, the two take turns chunk by chunk (see _lock_import), so no row is imported twice.
IMPORT_STALE_AFTER = dt.timedelta(minutes=5)
CONTROL_CHARS_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_NAME = 50


# --- scope -----------------------------------------------------------------------------------

def scope_root(session: Session, actor: Actor) -> Union | None:
    """Return the union whose subtree the actor administers, or None for the whole platform."""
    if actor.role == Role.UNION_ADMIN and actor.union_id is not None:
        return session.get(Union, actor.union_id)
    return None


def _in_scope(root: Union | None, union: Union) -> bool:
    return root is None or union.path.startswith(root.path)


def _scoped(query: Select, root: Union | None) -> Select:
    return query if root is None else query.where(Union.path.startswith(root.path))


# --- unions ----------------------------------------------------------------------------------

def union_snapshot(union: Union) -> dict:
    """Return the fields the audit log keeps for a union."""
    return {"name": union.name, "region": union.region, "kind": union.kind.value,
            "parent_id": union.parent.public_id if union.parent else None}


def get_union(session: Session, actor: Actor, public_id: str) -> Union:
    """Return a union the actor may see, or raise NotFound."""
    union = session.scalar(select(Union).where(Union.public_id == public_id))
    if union is None or not _in_scope(scope_root(session, actor), union):
        raise NotFound("No such union.")
    return union


def create_union(session: Session, actor: Actor, *, name: str, parent_id: str | None, region: str) -> Union:
    """Add a union under a parent the actor administers (a root only for a platform admin)."""
    root = scope_root(session, actor)
    name = name.strip()
    if not name:
        raise ValidationFailed({"name": ["Give the union a name."]})
    parent = None
    if parent_id is None:
        if root is not None:
            raise ValidationFailed({"parent_id": ["Choose the parent union within your organisation."]})
    else:
        parent = session.scalar(select(Union).where(Union.public_id == parent_id))
        if parent is None or not _in_scope(root, parent):
            raise ValidationFailed({"parent_id": ["Unknown union."]})
    depth = 0 if parent is None else parent.path.count("/") - 1
    if depth >= len(UNION_KINDS_BY_DEPTH):
        raise ValidationFailed({"parent_id": ["A grassroots union cannot have unions under it."]})
    try:
        region = validate_region(region, parent.region if parent else None)
    except InvalidValue as exc:
        raise ValidationFailed({"region": [str(exc)]}) from None
    parent_key = parent.id if parent else None
    if _union_named(session, parent_key, name):
        raise Conflict("A union of that name already exists there.", code="duplicate_union")
    union = Union(public_id=new_public_id("uni"), name=name, parent=parent, region=region,
                  kind=UNION_KINDS_BY_DEPTH[depth])
    session.add(union)
    try:
        session.flush()
    except IntegrityError:
        # Another request added the same name under the same parent since the check above.
        session.rollback()
        if _union_named(session, parent_key, name):
            raise Conflict("A union of that name already exists there.", code="duplicate_union") from None
        raise
    union.path = (parent.path if parent else "/") + f"{union.id}/"
    audit.record(session, actor, "union.created", "union", union.public_id, after=union_snapshot(union))
    session.commit()
    return union


def _union_named(session: Session, parent_id: int | None, name: str) -> bool:
    parent_match = Union.parent_id.is_(None) if parent_id is None else Union.parent_id == parent_id
    return session.scalar(select(Union.id).where(parent_match, Union.name == name)) is not None


def list_unions(session: Session, actor: Actor, *, parent_id: str | None, limit: int,
                cursor: str | None) -> Page:
    """List the unions the actor may see, optionally the children of one."""
    query = _scoped(select(Union), scope_root(session, actor))
    if parent_id:
        parent = get_union(session, actor, parent_id)
        query = query.where(Union.parent_id == parent.id)
    return paginate(session, query, Union.id, limit=limit, cursor=cursor)


# --- members ---------------------------------------------------------------------------------

@dataclass
class MemberInput:
    name: str
    id_number: str
    phone: str
    union_id: str
    join_date: dt.date | None = None


def member_snapshot(member: Member) -> dict:
    """Return the masked fields the audit log keeps for a member."""
    return {"name": member.name, "id_number": member.id_number_masked, "phone": member.phone_masked,
            "union_id": member.union.public_id if member.union else None,
            "status": member.status.value, "join_date": member.join_date.isoformat()}


def _check_fields(data: MemberInput, today: dt.date) -> tuple[dict[str, list[str]], dict]:
    """Validate a member's fields; return (errors, cleaned values)."""
    errors: dict[str, list[str]] = {}
    clean: dict = {}
    name = (data.name or "").strip()
    if not name or len(name) > MAX_NAME:
        errors["name"] = [f"Give the member's name (1-{MAX_NAME} characters)."]
    clean["name"] = name
    for field, validator in (("id_number", validate_id_number), ("phone", validate_phone)):
        try:
            clean[field] = validator(getattr(data, field)) if field == "phone" else validator(data.id_number, today)
        except InvalidValue as exc:
            errors[field] = [str(exc)]
    if data.join_date is not None and data.join_date > today:
        errors["join_date"] = ["The join date is in the future."]
    clean["join_date"] = data.join_date or today
    return errors, clean


def _error_word(errors: dict[str, list[str]]) -> str:
    if "id_number" in errors:
        return "invalid_id_number"
    if "phone" in errors:
        return "invalid_phone"
    return "validation_error"


def _new_member(cipher: FieldCipher, clean: dict, union: Union) -> Member:
    id_number, phone = clean["id_number"], clean["phone"]
    return Member(
        public_id=new_public_id("mem"), name=clean["name"],
        id_number_enc=cipher.encrypt(id_number, ID_CONTEXT),
        id_number_index=cipher.blind_index(id_number, ID_CONTEXT),
        id_number_masked=mask_id_number(id_number),
        phone_enc=cipher.encrypt(phone, PHONE_CONTEXT),
        phone_index=cipher.blind_index(phone, PHONE_CONTEXT),
        phone_masked=mask_phone(phone),
        union=union, union_id=union.id, join_date=clean["join_date"], status=MemberStatus.ACTIVE,
    )


def register_member(session: Session, cipher: FieldCipher, actor: Actor, data: MemberInput,
                    today: dt.date | None = None) -> Member:
    """Register one member in a union the actor administers; one ID number, one member."""
    today = today or dt.date.today()
    errors, clean = _check_fields(data, today)
    union = session.scalar(select(Union).where(Union.public_id == data.union_id))
    if union is None or not _in_scope(scope_root(session, actor), union):
        errors["union_id"] = ["Unknown union."]
    if errors:
        raise ValidationFailed(errors, code=_error_word(errors))
    index = cipher.blind_index(clean["id_number"], ID_CONTEXT)
    if session.scalar(select(Member.id).where(Member.id_number_index == index)) is not None:
        raise Conflict("A member with this ID number is already registered.", code="duplicate_member")
    member = _new_member(cipher, clean, union)
    session.add(member)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict("A member with this ID number is already registered.", code="duplicate_member") from None
    audit.record(session, actor, "member.created", "member", member.public_id, after=member_snapshot(member))
    session.commit()
    return member


def get_member(session: Session, actor: Actor, public_id: str) -> Member:
    """Return a member the actor may see (their own record for a member), or raise NotFound."""
    member = session.scalar(select(Member).where(Member.public_id == public_id))
    if member is None:
        raise NotFound("No such member.")
    if actor.role == Role.MEMBER:
        if member.id != actor.member_id:
            raise NotFound("No such member.")
    elif not _in_scope(scope_root(session, actor), member.union):
        raise NotFound("No such member.")
    return member


def find_member_by_id_number(session: Session, cipher: FieldCipher, id_number: str) -> Member | None:
    """Look a member up by exact ID number through the blind index."""
    try:
        value = validate_id_number(id_number, dt.date.today())
    except InvalidValue:
        return None
    return session.scalar(select(Member).where(
        Member.id_number_index == cipher.blind_index(value, ID_CONTEXT)))


def list_members(session: Session, cipher: FieldCipher, actor: Actor, *, union_id: str | None = None,
                 hardship: bool | None = None, status: MemberStatus | None = None,
                 q: str | None = None, id_number: str | None = None, phone: str | None = None,
                 limit: int, cursor: str | None, today: dt.date | None = None) -> Page:
    """List members in the actor's scope; union_id takes that union and the unions under it."""
    today = today or dt.date.today()
    query = _scoped(select(Member).join(Member.union), scope_root(session, actor))
    if union_id:
        union = get_union(session, actor, union_id)
        query = query.where(Union.path.startswith(union.path))
    if hardship is not None:
        current = select(HardshipRecord.member_id).where(HardshipRecord.valid_until >= today)
        query = query.where(Member.id.in_(current) if hardship else Member.id.not_in(current))
    if status is not None:
        query = query.where(Member.status == status)
    if q:
        query = query.where(Member.name.startswith(q.strip(), autoescape=True))
    if id_number:
        value = normalize_id_number(id_number)
        query = query.where(Member.id_number_index == cipher.blind_index(value, ID_CONTEXT))
    if phone:
        query = query.where(Member.phone_index == cipher.blind_index(normalize_phone(phone), PHONE_CONTEXT))
    return paginate(session, query, Member.id, limit=limit, cursor=cursor)


def update_member(session: Session, cipher: FieldCipher, actor: Actor, public_id: str, *,
                  name: str | None = None, phone: str | None = None, status: MemberStatus | None = None,
                  union_id: str | None = None) -> Member:
    """Change a member's name, phone, status, or union (a transfer within the actor's scope)."""
    member = get_member(session, actor, public_id)
    before = member_snapshot(member)
    errors: dict[str, list[str]] = {}
    if name is not None:
        if not name.strip() or len(name.strip()) > MAX_NAME:
            errors["name"] = [f"Give the member's name (1-{MAX_NAME} characters)."]
        else:
            member.name = name.strip()
    if phone is not None:
        try:
            value = validate_phone(phone)
            member.phone_enc = cipher.encrypt(value, PHONE_CONTEXT)
            member.phone_index = cipher.blind_index(value, PHONE_CONTEXT)
            member.phone_masked = mask_phone(value)
        except InvalidValue as exc:
            errors["phone"] = [str(exc)]
    if union_id is not None:
        union = session.scalar(select(Union).where(Union.public_id == union_id))
        if union is None or not _in_scope(scope_root(session, actor), union):
            errors["union_id"] = ["Unknown union."]
        else:
            member.union = union
    if status is not None:
        member.status = status
    if errors:
        session.rollback()
        raise ValidationFailed(errors, code=_error_word(errors))
    after = member_snapshot(member)
    if after != before:
        audit.record(session, actor, "member.updated", "member", member.public_id, before=before, after=after)
    session.commit()
    return member


def reveal_id_number(cipher: FieldCipher, member: Member) -> str:
    """Decrypt a member's ID number (for the card owner or a verified flow, never for display)."""
    return cipher.decrypt(member.id_number_enc, ID_CONTEXT)


# --- hardship register -----------------------------------------------------------------------

def hardship_snapshot(record: HardshipRecord | None) -> dict | None:
    """Return the fields the audit log keeps for a hardship entry."""
    if record is None:
        return None
    return {"level": record.level, "reason": record.reason, "valid_until": record.valid_until.isoformat()}


def set_hardship(session: Session, actor: Actor, member_public_id: str, *, level: int, reason: str,
                 valid_until: dt.date, today: dt.date | None = None) -> HardshipRecord:
    """Create or replace a member's hardship register entry."""
    today = today or dt.date.today()
    member = get_member(session, actor, member_public_id)
    errors = {}
    if level not in (1, 2, 3):
        errors["level"] = ["Level is 1, 2 or 3."]
    if not reason.strip():
        errors["reason"] = ["Say why the member is on the register."]
    if valid_until < today:
        errors["valid_until"] = ["The entry would already have expired."]
    if errors:
        raise ValidationFailed(errors)
    try:
        return _write_hardship(session, actor, member, level, reason.strip(), valid_until)
    except IntegrityError:
        # A concurrent request created the member's first entry: replace that one instead.
        session.rollback()
        member = get_member(session, actor, member_public_id)
        session.refresh(member, ["hardship"])
        if member.hardship is None:
            raise
        return _write_hardship(session, actor, member, level, reason.strip(), valid_until)


def _write_hardship(session: Session, actor: Actor, member: Member, level: int, reason: str,
                    valid_until: dt.date) -> HardshipRecord:
    record = member.hardship
    before = hardship_snapshot(record)
    if record is None:
        record = HardshipRecord(member=member, level=level, reason=reason, valid_until=valid_until)
        session.add(record)
    record.level, record.reason, record.valid_until = level, reason, valid_until
    record.updated_by_id = actor.user_id
    session.flush()
    audit.record(session, actor, "member.hardship.set", "member", member.public_id,
                 before=before, after=hardship_snapshot(record))
    session.commit()
    return record


def clear_hardship(session: Session, actor: Actor, member_public_id: str) -> None:
    """Take a member off the hardship register."""
    member = get_member(session, actor, member_public_id)
    if member.hardship is None:
        raise NotFound("The member is not on the hardship register.")
    before = hardship_snapshot(member.hardship)
    session.delete(member.hardship)
    audit.record(session, actor, "member.hardship.cleared", "member", member.public_id, before=before)
    session.commit()


# --- CSV import ------------------------------------------------------------------------------

def _open_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, cells) for each non-blank data row, streaming from disk."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for cells in reader:
            if any(c.strip() for c in cells):
                yield reader.line_num, cells


def _read_header(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        header = next(csv.reader(fh), None)
    return [h.strip().lower() for h in (header or [])]


def start_import(session: Session, actor: Actor, stream: BinaryIO, filename: str, upload_dir: str,
                 max_rows: int) -> MemberImport:
    """Store an uploaded member CSV, check its header and encoding, and count its rows."""
    public_id = new_public_id("imp")
    folder = Path(upload_dir) / "member-imports"
    folder.mkdir(parents=True, exist_ok=True)
    stored_name = public_id + ".csv"
    path = folder / stored_name
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        while chunk := stream.read(1 << 16):
            digest.update(chunk)
            out.write(chunk)
    try:
        header = _read_header(path)
        missing = [c for c in IMPORT_COLUMNS if c not in header]
        unknown = [c for c in header if c not in IMPORT_COLUMNS + IMPORT_OPTIONAL]
        if missing or unknown:
            raise ValidationFailed(
                {"file": [f"The header must be {','.join(IMPORT_COLUMNS)}[,join_date]"
                          + (f"; missing {', '.join(missing)}" if missing else "")
                          + (f"; unknown {', '.join(unknown)}" if unknown else "") + "."]},
                code="invalid_csv")
        total = 0
        for total, _row in enumerate(_open_rows(path), start=1):
            if total > max_rows:
                raise ValidationFailed({"file": [f"A file may hold at most {max_rows} rows."]}, code="invalid_csv")
        if total == 0:
            raise ValidationFailed({"file": ["The file has a header but no rows."]}, code="invalid_csv")
    except UnicodeDecodeError:
        path.unlink(missing_ok=True)
        raise ValidationFailed({"file": ["The file is not UTF-8 text; save it as CSV UTF-8."]},
                               code="invalid_csv") from None
    except csv.Error as exc:
        path.unlink(missing_ok=True)
        raise ValidationFailed({"file": [f"The file is not valid CSV: {exc}."]}, code="invalid_csv") from None
    except ValidationFailed:
        path.unlink(missing_ok=True)
        raise
    imp = MemberImport(public_id=public_id, created_by_id=actor.user_id, scope_union_id=actor.union_id
                       if actor.role == Role.UNION_ADMIN else None, filename=(filename or "members.csv")[:255],
                       stored_name=stored_name, sha256=digest.hexdigest(), total_rows=total)
    session.add(imp)
    session.flush()
    audit.record(session, actor, "member_import.created", "member_import", imp.public_id,
                 after={"filename": imp.filename, "total_rows": total, "sha256": imp.sha256})
    session.commit()
    return imp


def _row_input(header: list[str], cells: list[str]) -> MemberInput | tuple[str, str]:
    """Read a row's cells, or return (error word, message) for a row that cannot be a member."""
    if len(cells) != len(header):
        return "malformed_row", f"Expected {len(header)} columns, found {len(cells)}."
    values = dict(zip(header, (c.strip() for c in cells)))
    # Checked before anything reaches the database: PostgreSQL refuses NUL in text, failing the whole chunk.
    if any(CONTROL_CHARS_RE.search(v) for v in values.values()):
        return N_("invalid_text"), "A cell holds a control character (such as NUL or a line break)."
    join_date = None
    if values.get("join_date"):
        try:
            join_date = dt.date.fromisoformat(values["join_date"])
        except ValueError:
            return "malformed_row", "join_date must be a date like 2024-03-01."
    return MemberInput(values["name"], values["id_number"], values["phone"], values["union_id"], join_date)


def _import_actor(imp: MemberImport) -> Actor:
    return Actor(imp.created_by_id, f"import {imp.public_id}", Role.UNION_ADMIN, union_id=imp.scope_union_id)


def _import_path(upload_dir: str, imp: MemberImport) -> Path:
    return Path(upload_dir) / "member-imports" / imp.stored_name


def _lock_import(session: Session, import_id: int) -> MemberImport:
    """Load an import afresh and hold its row until commit, so two runs of one import take turns."""
    return session.get(MemberImport, import_id, with_for_update=True, populate_existing=True)


def run_import(session: Session, cipher: FieldCipher, import_public_id: str, upload_dir: str, *,
               chunk_size: int = IMPORT_CHUNK, today: dt.date | None = None) -> MemberImport:
    """Process an import from where it stopped (also after a failure), committing each chunk."""
    today = today or dt.date.today()
    imp = session.scalar(select(MemberImport).where(MemberImport.public_id == import_public_id))
    if imp is None:
        raise NotFound("No such import.")
    if imp.status == ImportStatus.COMPLETED:
        return imp
    imp.status, imp.error = ImportStatus.RUNNING, None
    session.commit()
    actor = _import_actor(imp)
    root = session.get(Union, imp.scope_union_id) if imp.scope_union_id else None
    path = _import_path(upload_dir, imp)
    header = _read_header(path)
    start = imp.processed_rows
    buffer: list[tuple[int, int, list[str]]] = []
    for seq, (line, cells) in enumerate(_open_rows(path), start=1):
        if seq <= start:
            continue
        buffer.append((seq, line, cells))
        if len(buffer) >= chunk_size:
            _import_chunk(session, cipher, imp, actor, root, header, buffer, today)
            buffer = []
    if buffer:
        _import_chunk(session, cipher, imp, actor, root, header, buffer, today)
    imp = _lock_import(session, imp.id)
    if imp.status == ImportStatus.COMPLETED:  # another run of this import finished it first
        session.commit()
        return imp
    imp.status = ImportStatus.COMPLETED
    imp.error = None
    imp.finished_at = utcnow()
    # The upload holds ID numbers in clear; once every row is recorded it is not kept.
    path.unlink(missing_ok=True)
    audit.record(session, actor, "member_import.completed", "member_import", imp.public_id,
                 after={"created": imp.created_rows, "unchanged": imp.unchanged_rows,
                        "rejected": imp.rejected_rows})
    session.commit()
    return imp


def _import_chunk(session: Session, cipher: FieldCipher, imp: MemberImport, actor: Actor, root: Union | None,
                  header: list[str], rows: list[tuple[int, int, list[str]]], today: dt.date) -> None:
    """Import one chunk of rows and its progress in a single commit, redoing it if another writer races it."""
    for attempt in range(1, IMPORT_CHUNK_ATTEMPTS + 1):
        try:
            _import_chunk_once(session, cipher, imp, actor, root, header, rows, today)
            return
        except IntegrityError:
            # Someone else registered one of these ID numbers meanwhile (another import, or the API).
            # Redone, the chunk finds that member and reports the row unchanged or a duplicate.
            session.rollback()
            if attempt == IMPORT_CHUNK_ATTEMPTS:
                raise


def _import_chunk_once(session: Session, cipher: FieldCipher, imp: MemberImport, actor: Actor,
                       root: Union | None, header: list[str], rows: list[tuple[int, int, list[str]]],
                       today: dt.date) -> None:
    imp = _lock_import(session, imp.id)
    # Another run of this import may have done some of these rows already: skip what it recorded.
    rows = [row for row in rows if row[0] > imp.processed_rows]
    if not rows:
        session.commit()
        return
    assert rows[0][0] == imp.processed_rows + 1, "an import's rows are recorded in file order, none skipped"
    parsed = [(line, _row_input(header, cells)) for _seq, line, cells in rows]
    union_ids = {p.union_id for _l, p in parsed if isinstance(p, MemberInput)}
    unions = {u.public_id: u for u in session.scalars(select(Union).where(Union.public_id.in_(union_ids)))}
    results: list[MemberImportRow] = []
    candidates: list[tuple[int, dict, Union]] = []
    for line, item in parsed:
        if isinstance(item, tuple):
            word, message = item
            results.append(MemberImportRow(line=line, status=RowStatus.REJECTED, error=word, message=message))
            continue
        errors, clean = _check_fields(item, today)
        union = unions.get(item.union_id)
        if union is None or not _in_scope(root, union):
            errors["union_id"] = ["Unknown union."]
        if errors:
            field, texts = next(iter(errors.items()))
            word = {"union_id": "unknown_union", "name": "invalid_name", "join_date": "invalid_join_date"}.get(
                field, _error_word({field: texts}))
            results.append(MemberImportRow(line=line, status=RowStatus.REJECTED, error=word, message=texts[0]))
            continue
        candidates.append((line, clean, union))
    indexes = [cipher.blind_index(c["id_number"], ID_CONTEXT) for _l, c, _u in candidates]
    known = {m.id_number_index: m for m in session.scalars(select(Member).where(Member.id_number_index.in_(indexes)))}
    for (line, clean, union), index in zip(candidates, indexes):
        existing = known.get(index)
        if existing is not None:
            if existing.name == clean["name"] and existing.union_id == union.id:
                results.append(MemberImportRow(line=line, status=RowStatus.UNCHANGED, member=existing))
            else:
                results.append(MemberImportRow(
                    line=line, status=RowStatus.REJECTED, error="duplicate_id_number",
                    message="This ID number is already registered with other details."))
            continue
        member = _new_member(cipher, clean, union)
        session.add(member)
        known[index] = member
        results.append(MemberImportRow(line=line, status=RowStatus.CREATED, member=member))
    session.flush()
    for row in sorted(results, key=lambda r: r.line):  # ids in file order: the rows are listed by id
        row.import_id = imp.id
        session.add(row)
        if row.status == RowStatus.CREATED:
            audit.record(session, actor, "member.created", "member", row.member.public_id,
                         after=member_snapshot(row.member) | {"import_id": imp.public_id})
    imp.processed_rows += len(rows)
    imp.created_rows += sum(r.status == RowStatus.CREATED for r in results)
    imp.unchanged_rows += sum(r.status == RowStatus.UNCHANGED for r in results)
    imp.rejected_rows += sum(r.status == RowStatus.REJECTED for r in results)
    session.commit()


def get_import(session: Session, actor: Actor, public_id: str) -> MemberImport:
    """Return an import whose scope lies within the actor's, or raise NotFound."""
    imp = session.scalar(select(MemberImport).where(MemberImport.public_id == public_id))
    if imp is None:
        raise NotFound("No such import.")
    root = scope_root(session, actor)
    if root is not None:
        scope = session.get(Union, imp.scope_union_id) if imp.scope_union_id else None
        if scope is None or not _in_scope(root, scope):
            raise NotFound("No such import.")
    return imp


def import_rows(session: Session, imp: MemberImport, *, status: RowStatus | None, limit: int,
                cursor: str | None) -> Page:
    """List the per-line results of an import, in file order."""
    query = select(MemberImportRow).where(MemberImportRow.import_id == imp.id)
    if status is not None:
        query = query.where(MemberImportRow.status == status)
    return paginate(session, query, MemberImportRow.id, limit=limit, cursor=cursor)


def fail_import(session: Session, public_id: str, reason: str) -> MemberImport | None:
    """Mark an import failed after an unexpected error (a re-run resumes from its last chunk)."""
    session.rollback()
    imp = session.scalar(select(MemberImport).where(MemberImport.public_id == public_id))
    if imp is None:
        return None
    imp = _lock_import(session, imp.id)
    if imp.status != ImportStatus.COMPLETED:
        imp.status = ImportStatus.FAILED
        imp.error = reason[:500]
        audit.record(session, _import_actor(imp), "member_import.failed", "member_import", imp.public_id,
                     after={"error": imp.error, "processed_rows": imp.processed_rows})
    session.commit()
    return imp


def last_started_at(session: Session, imp: MemberImport) -> dt.datetime:
    """Return when the import was uploaded or last resumed (the audit log keeps both)."""
    started = session.scalar(select(func.max(AuditEvent.occurred_at)).where(
        AuditEvent.object_type == "member_import", AuditEvent.object_id == imp.public_id,
        AuditEvent.action.in_(("member_import.created", "member_import.resumed"))))
    return max(started or imp.created_at, imp.created_at)


def is_stalled(session: Session, imp: MemberImport, now: dt.datetime,
               stale_after: dt.timedelta = IMPORT_STALE_AFTER) -> bool:
    """Tell whether a queued or running import was started so long ago that its run must have died."""
    return (imp.status in (ImportStatus.QUEUED, ImportStatus.RUNNING)
            and now - last_started_at(session, imp) >= stale_after)


def resume_import(session: Session, actor: Actor, public_id: str, upload_dir: str, *,
                  stale_after: dt.timedelta = IMPORT_STALE_AFTER, now: dt.datetime | None = None) -> MemberImport:
    """Queue a failed or stalled import to run again from where it stopped; refuse a finished or live one."""
    imp = _lock_import(session, get_import(session, actor, public_id).id)
    now = now or utcnow()
    if imp.status == ImportStatus.COMPLETED:
        raise Conflict("The import has completed; there is nothing to resume.", code="import_completed")
    if imp.status != ImportStatus.FAILED and not is_stalled(session, imp, now, stale_after):
        raise Conflict("The import is still running; resume it only if it stops making progress.",
                       code="import_running")
    if not _import_path(upload_dir, imp).exists():
        raise Conflict("The uploaded file is no longer kept; upload it again (rows already imported stay).",
                       code="import_file_missing")
    before = {"status": imp.status.value, "processed_rows": imp.processed_rows, "error": imp.error}
    imp.status, imp.error = ImportStatus.QUEUED, None
    audit.record(session, actor, "member_import.resumed", "member_import", imp.public_id, before=before,
                 after={"status": imp.status.value})
    session.commit()
    return imp


def resumable_imports(session: Session, *, include_failed: bool, stale_after: dt.timedelta = IMPORT_STALE_AFTER,
                      limit: int = 100, now: dt.datetime | None = None) -> list[str]:
    """Return the public ids of stalled (and, if asked, failed) imports, oldest first, at most `limit`."""
    now = now or utcnow()
    # An import is never (re)started before its upload, so one uploaded within stale_after cannot be stalled.
    candidates = (MemberImport.status.in_([ImportStatus.QUEUED, ImportStatus.RUNNING])
                  & (MemberImport.created_at <= now - stale_after))
    if include_failed:
        candidates = candidates | (MemberImport.status == ImportStatus.FAILED)
    found = []
    for imp in session.scalars(select(MemberImport).where(candidates).order_by(MemberImport.id)):
        if imp.status == ImportStatus.FAILED or is_stalled(session, imp, now, stale_after):
            found.append(imp.public_id)
            if len(found) == limit:
                break
    return found

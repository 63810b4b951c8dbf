"""What a review attachment may be: a photo or a scanned document, judged by its bytes, never its name.

Only these kinds are kept (``sniff``); anything else — an executable named ``photo.jpg``, an HTML page, a
zip — is refused naming what it was taken for. Each file is at most ``MAX_BYTES``, a review holds at most
``MAX_FILES``; stored once per content (the SHA-256 is its name in the store and in the bundle).
"""

from __future__ import annotations

MAX_BYTES = 8 * 1024 * 1024  # a phone photo or a scanned page
MAX_FILES = 40

# media type -> the file name extension used in the bundle
KINDS = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp",
         "image/heic": ".heic", "application/pdf": ".pdf"}
KIND_CN = {"image/jpeg": "JPEG 照片", "image/png": "PNG 图片", "image/gif": "GIF 图片", "image/webp": "WebP 图片",
           "image/heic": "HEIC 照片", "application/pdf": "PDF 文件"}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"}


class AttachmentError(ValueError):
    pass


def sniff(data: bytes) -> str | None:
    """The media type the bytes are, among KINDS; None for anything else."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "image/heic"
    if data[:1024].lstrip(b"\r\n\t ").startswith(b"%PDF-"):
        return "application/pdf"
    return None


def accept(data: bytes) -> str:
    """The media type of an attachment that may be kept; AttachmentError saying why not."""
    if not data:
        raise AttachmentError("the attachment is empty")
    if len(data) > MAX_BYTES:
        raise AttachmentError(f"the attachment is {len(data)} bytes; at most {MAX_BYTES} are kept")
    kind = sniff(data)
    if kind is None:
        raise AttachmentError("the attachment is neither an image (JPEG, PNG, GIF, WebP, HEIC) nor a PDF "
                              "by its content (its name or declared type does not decide)")
    return kind


def bundle_name(sha256: str, media_type: str) -> str:
    return f"attachments/{sha256}{KINDS.get(media_type, '.bin')}"

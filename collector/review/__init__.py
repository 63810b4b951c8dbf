"""The review (评审): a reviewer scores a point's manual items for a period, and the signed sheet is the whole 自评表.

- ``lines``: the arithmetic, pure — the frozen automatic part plus the reviewer's entries, item by item;
  automatic + manual = total, unless a 一票否决 makes it 0.
- ``service``: opening (freezing the automatic part), entering items, attachments, submitting.
- ``files``: what an attachment may be (images and PDF, by their bytes), ``signed``: the signed bundle,
  ``finalsheet``: its PDF and XLSX, ``check``: the offline checks ``evidence verify`` adds for it,
  ``summary``: a review round's county summary.
"""

"""The point registry: region paths and the spreadsheets county staff keep their point lists in."""

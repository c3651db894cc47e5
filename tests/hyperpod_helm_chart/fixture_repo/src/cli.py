# A repository file outside the chart path; the installer must never write it.

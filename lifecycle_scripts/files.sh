# shellcheck shell=bash
#
# File helpers that make re-runs safe: a file is only rewritten when its
# content differs, and a directory copy lands under a temporary name first, so
# a crash half-way never leaves something that looks like a finished copy.

# file_has_content FILE CONTENT: true when FILE holds exactly CONTENT
# (plus the trailing newline write_file adds).
file_has_content() {
  local file=$1 content=$2
  [[ -f $file ]] && [[ "$(< "$file")" == "$content" ]]
}

# write_file FILE MODE CONTENT: replace FILE atomically (write + rename).
write_file() {
  local file=$1 mode=$2 content=$3
  mkdir -p -- "${file%/*}"
  printf '%s\n' "$content" > "$file.tmp"
  chmod "$mode" "$file.tmp"
  mv -f -- "$file.tmp" "$file"
  log "wrote $file"
}

# copy_dir_fresh SOURCE DEST: make DEST an exact copy of SOURCE (an empty
# directory when SOURCE does not exist). Whatever was at DEST before is
# deleted: callers only get here when DEST is not in use yet.
copy_dir_fresh() {
  local source=$1 dest=$2
  local partial="$dest.partial"
  rm -rf -- "$partial" "$dest"
  mkdir -p -- "$partial"
  if [[ -d $source ]]; then
    log "copying $source to $dest"
    # -a keeps owners, modes, times and hard links; --preserve=xattr makes a
    # lost extended attribute an error instead of a silent skip, because
    # containerd's overlayfs snapshots depend on trusted.overlay.* xattrs.
    cp -a --preserve=xattr -- "$source/." "$partial/"
  fi
  mv -- "$partial" "$dest"
}

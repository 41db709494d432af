/* journeyctl's live-chat commands (issue 6): `journeyctl transcripts` exports chat transcripts and
 * `journeyctl agent add|passwd|disable|enable|list` manages the agent accounts of a site. They
 * live in journeyctl_chat.c; journeyctl.c hands over the command line when its first word is one
 * of theirs and lists them in its --help. */
#ifndef JD_JOURNEYCTL_CHAT_H
#define JD_JOURNEYCTL_CHAT_H

#include "journeyctl_common.h"

#include <stdbool.h>
#include <stdio.h>

/* True when group ("transcripts", "agent") is a chat command. */
bool jd_ctl_chat_owns(const char *group);

/* Writes the chat commands' lines of `journeyctl --help` ("  NAME  SYNOPSIS"). */
void jd_ctl_chat_usage(FILE *f);

/* Runs a chat command. argv holds the words after group (a subcommand for "agent", then options);
 * c comes from journeyctl.c with db_url (--database-url given before the command; NULL: the
 * command's own --database-url or JOURNEYD_DATABASE_URL) and actor (what the audit log records)
 * set; this sets c->flags and c->cmd and closes c->conn. Returns the exit status: 0, 1 on an
 * error, 2 on a usage error (each error is one line "journeyctl: ..." on stderr). */
JD_CTL_WUR int jd_ctl_chat_main(jd_ctl *c, const char *group, int argc, char **argv);

#endif

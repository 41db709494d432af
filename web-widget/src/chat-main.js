// Entry of the chat bundle (dist/chat.js): hands the chat to the widget that loaded it.
import { chat } from './chat.js'

const j = window.journey
if (j && j.c) j.c(chat)

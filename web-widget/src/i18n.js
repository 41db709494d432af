// UI strings. Survey prompts come from the server; only the widget's own words are here.
const T = {
  en: {
    close: 'Close',
    next: 'Next',
    send: 'Send',
    of: 'Question {0} of {1}',
    thanks: 'Thank you!',
    req: 'Please answer this question.',
    emo: ['Very unhappy', 'Unhappy', 'Neutral', 'Happy', 'Very happy'],
    yes: 'Yes',
    no: 'No',
    other: 'Other',
    otherL: 'Please describe',
    wait: 'Please wait a moment…',
    consent: 'Your answers cannot be saved until you accept data collection on this site.',
    nps: ['0 = not at all likely', '10 = extremely likely'],
    csat: ['1 = very unsatisfied', '5 = very satisfied'],
  },
  fr: {
    close: 'Fermer',
    next: 'Suivant',
    send: 'Envoyer',
    of: 'Question {0} sur {1}',
    thanks: 'Merci !',
    req: 'Veuillez répondre à cette question.',
    emo: ['Très mécontent', 'Mécontent', 'Neutre', 'Content', 'Très content'],
    yes: 'Oui',
    no: 'Non',
    other: 'Autre',
    otherL: 'Veuillez préciser',
    wait: 'Veuillez patienter un instant…',
    consent: "Vos réponses ne peuvent pas être enregistrées tant que vous n'avez pas accepté la collecte de données sur ce site.",
    nps: ['0 = pas du tout probable', '10 = très probable'],
    csat: ['1 = très insatisfait', '5 = très satisfait'],
  },
  ar: {
    close: 'إغلاق',
    next: 'التالي',
    send: 'إرسال',
    of: 'السؤال {0} من {1}',
    thanks: 'شكرًا لك!',
    req: 'يرجى الإجابة عن هذا السؤال.',
    emo: ['غير سعيد جدًا', 'غير سعيد', 'محايد', 'سعيد', 'سعيد جدًا'],
    yes: 'نعم',
    no: 'لا',
    other: 'أخرى',
    otherL: 'يرجى التوضيح',
    wait: 'يرجى الانتظار لحظة…',
    consent: 'لا يمكن حفظ إجاباتك حتى توافق على جمع البيانات في هذا الموقع.',
    nps: ['0 = غير محتمل إطلاقًا', '10 = محتمل جدًا'],
    csat: ['1 = غير راضٍ جدًا', '5 = راضٍ جدًا'],
  },
}

// Returns [strings, lang, dir] for a BCP 47 tag.
export function locale(tag) {
  const base = String(tag || 'en').toLowerCase().split(/[-_]/)[0]
  return [T[base] || T.en, T[base] ? base : 'en', /^(ar|he|fa|ur)$/.test(base) ? 'rtl' : 'ltr', base]
}

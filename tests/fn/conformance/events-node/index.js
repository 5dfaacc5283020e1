'use strict';
// Echoes each event back and says, in extensions, what the handler saw (the CloudEvents suite).
const { CloudEvent } = require('flotilla-fn');

function kind(data) {
  if (data === null || data === undefined) return 'none';
  if (Buffer.isBuffer(data)) return 'bytes';
  return typeof data === 'string' ? 'text' : 'json';
}

exports.handle = (event) => {
  if (event.extensions.reply === 'none') return null;
  return new CloudEvent({
    type: 'dev.flotilla.echo', source: '/echo', data: event.data,
    datacontenttype: event.datacontenttype || 'application/json', subject: event.subject,
    extensions: {
      datakind: kind(event.data), gotid: event.id, gottime: event.time || 'none',
      gotsubject: event.subject || 'none', gotext: event.extensions.custom || 'none',
    },
    structured: event.extensions.reply === 'structured',
  });
};
